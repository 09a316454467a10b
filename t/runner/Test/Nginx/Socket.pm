package Test::Nginx::Socket;

# The project's own runner for the Test::Nginx::Socket data format, used only when the real
# framework (not packaged by Debian) is not installed. It implements the subset of sections and
# knobs the suites in t/ use, with the same meaning, so the .t files run unchanged under both.
#
# Sections beyond the usual ones: skip_eval (as upstream). Knobs: TEST_NGINX_BINARY, TEST_NGINX_LOAD_MODULES, TEST_NGINX_PORT, TEST_NGINX_SERVROOT,
# $TEST_NGINX_* substitution in config sections and requests. Where the two could differ, this
# follows upstream: nginx runs with `-e logs/error.log`, and the log checks of a block run after
# each of its requests on the lines that request added. TEST_NGINX_USE_VALGRIND runs nginx under
# valgrind as upstream does (a number: memcheck with upstream's options and ./valgrind.suppress
# when it exists; other text: those valgrind options), its report on this process's stderr, with
# longer waits. TEST_NGINX_USE_HUP is not supported and makes the runner stop with a message.

use strict;
use warnings;

use Cwd qw(getcwd abs_path);
use File::Path qw(make_path remove_tree);
use File::Spec;
use IO::Select;
use IO::Socket::INET;
use POSIX qw(:sys_wait_h);
use Time::HiRes qw(time);
use Test::More ();

use parent 'Exporter';
our @EXPORT = qw(
    run_tests blocks repeat_each no_shuffle log_level master_on master_off workers
    worker_connections add_block_preprocessor no_long_string no_root_location env_to_nginx
    plan is isnt ok like unlike is_deeply diag note pass fail done_testing
    $ServerPort $ServRoot
);

*plan = \&Test::More::plan;
*is = \&Test::More::is;
*isnt = \&Test::More::isnt;
*ok = \&Test::More::ok;
*like = \&Test::More::like;
*unlike = \&Test::More::unlike;
*is_deeply = \&Test::More::is_deeply;
*diag = \&Test::More::diag;
*note = \&Test::More::note;
*pass = \&Test::More::pass;
*fail = \&Test::More::fail;
*done_testing = \&Test::More::done_testing;

our $ServerPort = $ENV{TEST_NGINX_PORT} || 1984;
our $ServRoot = $ENV{TEST_NGINX_SERVROOT} || File::Spec->catdir(getcwd(), 't', 'servroot');
$ENV{TEST_NGINX_SERVER_PORT} = $ServerPort;

my $no_plan = 0;
my $log_level = 'debug';
my $master = 'on';
my $workers = 1;
my $worker_connections = 64;
my @preprocessors;
my @env_to_nginx;
my $blocks;

sub import {
    my ($class, @args) = @_;
    my @rest;
    while (@args) {
        my $arg = shift @args;
        if ($arg eq 'no_plan') { $no_plan = 1; }
        elsif ($arg eq 'tests') { Test::More::plan(tests => shift @args); }
        else { push @rest, $arg; }
    }
    die "TEST_NGINX_USE_HUP is not supported by the project's runner; install Test::Nginx::Socket\n"
        if $ENV{TEST_NGINX_USE_HUP};
    __PACKAGE__->export_to_level(1, $class, @rest);
}

sub repeat_each { return 1 }
sub no_shuffle { }
sub no_long_string { }
sub no_root_location { }
sub log_level { $log_level = shift }
sub master_on { $master = 'on' }
sub master_off { $master = 'off' }
sub workers { $workers = shift }
sub worker_connections { $worker_connections = shift }
sub add_block_preprocessor { push @preprocessors, shift }
sub env_to_nginx { push @env_to_nginx, @_ }

# ---- the data ------------------------------------------------------------------------------

package Test::Nginx::Socket::Block {
    sub new { my ($class, %f) = @_; return bless {%f, sections => {}, filters => {}}, $class }
    sub name { $_[0]{name} }
    sub set_value { my ($self, $k, $v) = @_; $self->{sections}{$k} = $v; delete $self->{filters}{$k} }
    sub has_section { exists $_[0]{sections}{$_[1]} }
    sub value {
        my ($self, $k) = @_;
        return undef unless exists $self->{sections}{$k};
        my $v = $self->{sections}{$k};
        if (grep { $_ eq 'eval' } @{ $self->{filters}{$k} || [] }) {
            # Where Test::Base evaluates them.
            package Test::Base::Filter;
            $v = eval $v;
            die "TEST $self->{name}: --- $k eval failed: $@" if $@;
            $self->{sections}{$k} = $v;
            delete $self->{filters}{$k};
        }
        return $v;
    }
    our $AUTOLOAD;
    sub AUTOLOAD {
        my $self = shift;
        (my $k = $AUTOLOAD) =~ s/.*:://;
        return if $k eq 'DESTROY';
        return $self->value($k);
    }
}

sub parse_blocks {
    my $text = do { local $/; my $fh = \*main::DATA; <$fh> };
    die "no __DATA__ section\n" unless defined $text;
    my @blocks;
    my @chunks = split /^===[ \t]*/m, $text;
    shift @chunks;
    for my $chunk (@chunks) {
        my ($title, $body) = split /\n/, $chunk, 2;
        $body //= '';
        my $block = Test::Nginx::Socket::Block->new(name => $title);
        my @parts = split /^---[ \t]*/m, $body;
        shift @parts;
        for my $part (@parts) {
            my ($head, $content) = split /\n/, $part, 2;
            $content //= '';
            my ($name, $filters, $inline);
            if ($head =~ /^(\w+)\s*([^:]*?)\s*:\s*(.*)$/) {
                ($name, $filters, $inline) = ($1, $2, $3);
                $content = $inline;
            } else {
                ($name, $filters) = $head =~ /^(\w+)\s*(.*?)\s*$/;
                # Test::Base's default filters: no leading or trailing blank lines.
                $content =~ s/\A(?:[ \t]*\n)+//;
                $content =~ s/(?:\n[ \t]*)+\z/\n/;
                $content = '' if $content eq "\n";
            }
            my @filters = grep { length } split /\s+/, $filters;
            if (grep { $_ eq 'chomp' } @filters) { chomp $content }
            $block->{sections}{$name} = $content;
            $block->{filters}{$name} = \@filters;
        }
        push @blocks, $block;
    }
    my @only = grep { $_->has_section('ONLY') } @blocks;
    @blocks = @only if @only;
    @blocks = grep { !$_->has_section('SKIP') } @blocks;
    for my $i (0 .. $#blocks) {
        if ($blocks[$i]->has_section('LAST')) { splice @blocks, $i + 1; last }
    }
    return \@blocks;
}

sub blocks {
    $blocks //= parse_blocks();
    return @$blocks;
}

# ---- nginx -----------------------------------------------------------------------------------

sub substitute {
    my ($text, $where) = @_;
    return $text unless defined $text;
    $text =~ s/\$(TEST_NGINX_[_A-Z0-9]+)/
        defined $ENV{$1} ? $ENV{$1} : die "No environment variable $1 defined (in $where).\n"/ge;
    return $text;
}

sub write_file {
    my ($path, $content) = @_;
    my (undef, $dir) = File::Spec->splitpath($path);
    make_path($dir) if length $dir;
    open my $fh, '>', $path or die "cannot write $path: $!\n";
    print $fh $content;
    close $fh;
}

sub read_file {
    my ($path) = @_;
    open my $fh, '<', $path or return '';
    local $/;
    my $text = <$fh>;
    return $text // '';
}

sub nginx_conf {
    my ($block) = @_;
    my $modules = join '', map { "load_module $_;\n" } split ' ', ($ENV{TEST_NGINX_LOAD_MODULES} || '');
    my $user = $> == 0 ? "user root;\n" : '';
    my $env = join '', map { "env $_;\n" } @env_to_nginx;
    my $level = $block->value('log_level') // $log_level;
    my $main = substitute($block->value('main_config') // '', 'main_config');
    my $http = substitute($block->value('http_config') // '', 'http_config');
    my $config = substitute($block->value('config') // '', 'config');
    return <<"CONF";
${modules}daemon off;
master_process $master;
worker_processes $workers;
${user}error_log logs/error.log $level;
pid logs/nginx.pid;
$env
$main

events {
    accept_mutex off;
    worker_connections $worker_connections;
}

http {
    access_log logs/access.log;
    default_type text/plain;
    keepalive_timeout 68;
    client_body_temp_path $ServRoot/client_body_temp;
    proxy_temp_path $ServRoot/proxy_temp;

$http

    server {
        listen 127.0.0.1:$ServerPort;
        server_name localhost;

$config
    }
}
CONF
}

sub prepare_servroot {
    my ($block) = @_;
    remove_tree($ServRoot);
    make_path("$ServRoot/conf", "$ServRoot/logs", "$ServRoot/html");
    write_file("$ServRoot/conf/nginx.conf", nginx_conf($block));
    my $files = $block->value('user_files');
    if (defined $files) {
        for my $file (split /^>>> /m, $files) {
            next unless length $file;
            my ($name, $content) = split /\n/, $file, 2;
            write_file("$ServRoot/html/$name", $content // '');
        }
    }
}

sub nginx_binary { $ENV{TEST_NGINX_BINARY} || 'nginx' }

our $UseValgrind = $ENV{TEST_NGINX_USE_VALGRIND};
# As upstream: valgrind's extra seconds on every wait.
my $ValgrindExtraTimeout = $UseValgrind ? 60 : 0;

# The command that runs nginx: itself, or under valgrind with upstream's options.
sub nginx_command {
    my @nginx = (nginx_binary(), @_);
    return @nginx unless $UseValgrind;
    return ('valgrind', '-q', split(' ', $UseValgrind), @nginx) unless $UseValgrind =~ /^\d+$/;
    my @opts = qw(--num-callers=100 -q --tool=memcheck --leak-check=full --keep-debuginfo=yes
        --show-possibly-lost=no --gen-suppressions=all);
    push @opts, '--suppressions=valgrind.suppress' if -f 'valgrind.suppress';
    return ('valgrind', @opts, @nginx);
}

# Runs `nginx -t`; returns (exit code, everything it printed).
sub nginx_test_config {
    my $out = "$ServRoot/logs/stderr.log";
    system(sprintf "%s -e %s/logs/error.log -p %s/ -c conf/nginx.conf -t >%s 2>&1",
        nginx_binary(), $ServRoot, $ServRoot, $out);
    return ($? >> 8, read_file($out));
}

sub port_open {
    my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $ServerPort, Proto => 'tcp');
    return 0 unless $sock;
    close $sock;
    return 1;
}

sub start_nginx {
    my $pid = fork // die "fork: $!\n";
    if ($pid == 0) {
        # Under valgrind, as upstream, its report goes to the test's own stderr.
        open STDERR, '>', "$ServRoot/logs/stderr.log" or die unless $UseValgrind;
        open STDOUT, '>&', \*STDERR or die;
        # As upstream: -e puts what nginx says while starting into error.log too.
        exec nginx_command('-e', "$ServRoot/logs/error.log", '-p', "$ServRoot/", '-c', 'conf/nginx.conf')
            or die "exec: $!\n";
    }
    # Ready means the listening socket answers; a dead child means nginx refused to start.
    my $deadline = time + 10 + $ValgrindExtraTimeout;
    while (time < $deadline) {
        return $pid if port_open();
        if (waitpid($pid, WNOHANG) == $pid) {
            return (undef, read_file("$ServRoot/logs/stderr.log"));
        }
        select undef, undef, undef, 0.01;
    }
    stop_nginx($pid);
    return (undef, "nginx did not listen on port $ServerPort within " . (10 + $ValgrindExtraTimeout) . " s");
}

sub stop_nginx {
    my ($pid) = @_;
    # QUIT lets valgrind see the workers exit the way nginx means them to.
    kill $UseValgrind ? 'QUIT' : 'TERM', $pid;
    my $deadline = time + 10 + $ValgrindExtraTimeout;
    while (time < $deadline) {
        return if waitpid($pid, WNOHANG) == $pid;
        select undef, undef, undef, 0.01;
    }
    kill 'KILL', $pid;
    waitpid($pid, 0);
}

# ---- HTTP --------------------------------------------------------------------------------

sub http_request {
    my ($request, $more_headers, $timeout) = @_;
    my ($line, $body) = split /\n/, $request, 2;
    $line .= ' HTTP/1.1' unless $line =~ m{ HTTP/\d};
    $body //= '';
    my $head = "$line\r\n";
    my %given;
    for my $h (split /\n/, $more_headers // '') {
        next unless length $h;
        my ($k) = split /:/, $h, 2;
        $given{lc $k} = 1;
        $head .= "$h\r\n";
    }
    $head .= "Host: localhost\r\n" unless $given{host};
    $head .= "Connection: close\r\n" unless $given{connection};
    $head .= "Content-Length: " . length($body) . "\r\n" if length $body && !$given{'content-length'};
    my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $ServerPort, Proto => 'tcp')
        or return { error => "connect: $!" };
    binmode $sock;
    print $sock "$head\r\n$body";
    my $select = IO::Select->new($sock);
    my $raw = '';
    my $deadline = time + $timeout;
    while (1) {
        my $left = $deadline - time;
        return { error => "timeout after ${timeout}s", raw => $raw } if $left <= 0;
        last unless $select->can_read($left);
        my $n = sysread $sock, my $chunk, 65536;
        last unless $n;
        $raw .= $chunk;
    }
    close $sock;
    return parse_response($raw);
}

sub parse_response {
    my ($raw) = @_;
    my ($head, $body) = split /\r\n\r\n/, $raw, 2;
    return { error => 'no response', raw => $raw } unless defined $head && $head =~ m{^HTTP/\d\.\d (\d{3})};
    my $status = $1;
    my (%headers, @order);
    for my $h ((split /\r\n/, $head)[1 .. 1000]) {
        last unless defined $h;
        my ($k, $v) = $h =~ /^([^:]+):\s*(.*)$/ or next;
        push @{ $headers{lc $k} }, $v;
    }
    $body //= '';
    if (($headers{'transfer-encoding'}[0] // '') =~ /chunked/i) {
        my $decoded = '';
        while ($body =~ s/\A([0-9a-fA-F]+)[^\r\n]*\r\n//) {
            my $size = hex $1;
            last if $size == 0;
            $decoded .= substr($body, 0, $size, '');
            $body =~ s/\A\r\n//;
        }
        $body = $decoded;
    }
    return { status => $status, headers => \%headers, body => $body };
}

# ---- checks ------------------------------------------------------------------------------

sub as_list {
    my ($v, $n) = @_;
    return (undef) x $n unless defined $v;
    return ref $v eq 'ARRAY' ? @$v : ($v) x $n;
}

sub check_response {
    my ($block, $res, $i, $expect) = @_;
    my $name = $block->name . ($i ? " (request $i)" : '');
    if ($res->{error}) {
        Test::More::fail("$name - request: $res->{error}");
        return;
    }
    if (defined(my $like = $expect->{error_code_like})) {
        Test::More::like($res->{status}, qr/$like/, "$name - status code like");
    } else {
        Test::More::is($res->{status}, $expect->{error_code} // 200, "$name - status code ok");
    }
    if (defined(my $want = $expect->{response_headers})) {
        for my $line (grep { length } split /\n/, $want) {
            if ($line =~ /^!\s*(\S+)/) {
                Test::More::ok(!exists $res->{headers}{lc $1}, "$name - header $1 absent");
            } else {
                my ($k, $v) = $line =~ /^([^:]+):\s*(.*)$/;
                my $got = $res->{headers}{lc $k};
                Test::More::is(defined $got ? join(', ', @$got) : undef, $v, "$name - header $k ok");
            }
        }
    }
    if (defined(my $want = $expect->{response_headers_like})) {
        for my $line (grep { length } split /\n/, $want) {
            my ($k, $v) = $line =~ /^([^:]+):\s*(.*)$/;
            my $got = $res->{headers}{lc $k};
            Test::More::like(defined $got ? join(', ', @$got) : '', qr/^(?:$v)$/, "$name - header $k like");
        }
    }
    if (defined(my $want = $expect->{response_body})) {
        Test::More::is($res->{body}, $want, "$name - response_body - response is expected");
    }
    if (defined(my $want = $expect->{response_body_like})) {
        my $re = ref $want eq 'Regexp' ? $want : qr/$want/s;
        Test::More::like($res->{body}, $re, "$name - response_body_like - response is expected");
    }
}

sub check_log {
    my ($block, $log, $label) = @_;
    my $name = $block->name . ($label // '');
    for my $kind (qw(error_log no_error_log)) {
        my $want = $block->value($kind);
        next unless defined $want;
        my @patterns = ref $want eq 'ARRAY' ? @$want : ref $want ? ($want) : grep { length } split /\n/, $want;
        my @lines = split /^/m, $log;
        for my $p (@patterns) {
            # Line by line, as upstream: a pattern never spans two log lines.
            my $found = grep { ref $p eq 'Regexp' ? $_ =~ $p : index($_, $p) >= 0 } @lines;
            if ($kind eq 'error_log') {
                Test::More::ok($found, "$name - $kind: $p");
            } else {
                Test::More::ok(!$found, "$name - $kind: $p");
            }
        }
    }
}

# --- grep_error_log PATTERN and --- grep_error_log_out: the matches, each followed by a newline.
# As upstream, one expected output for every request of a block (an array is indexed by the
# repetition, not by the request).
sub check_grep_log {
    my ($block, $log, $label) = @_;
    my $pattern = $block->value('grep_error_log');
    return unless defined $pattern;
    chomp $pattern unless ref $pattern;
    my $re = ref $pattern eq 'Regexp' ? $pattern : qr/\Q$pattern\E/;
    # As upstream: the first match of each line that has one.
    my $got = join '', map { /$re/ && $& !~ /\n/ ? "$&\n" : () } split /^/m, $log;
    my $want = $block->value('grep_error_log_out') // '';
    $want = $want->[0] if ref $want eq 'ARRAY';
    my $name = $block->name . ($label // '') . " - grep_error_log_out";
    if (ref $want eq 'Regexp') {
        Test::More::like($got, $want, $name);
    } else {
        Test::More::is($got, $want, $name);
    }
}

sub run_block {
    my ($block) = @_;
    $_->($block) for @preprocessors;
    prepare_servroot($block);
    my $name = $block->name;

    if (defined $block->value('must_die')) {
        my ($code) = nginx_test_config();
        Test::More::isnt($code, 0, "$name - nginx refused the configuration");
        # As upstream: what nginx said goes to error.log (-e); that is what is checked.
        check_log($block, read_file("$ServRoot/logs/error.log"));
        return;
    }

    my ($pid, $why) = start_nginx();
    unless ($pid) {
        Test::More::fail("$name - nginx started: $why");
        return;
    }
    my $requests = $block->value('request');
    my @requests = ref $requests eq 'ARRAY' ? @$requests : ($requests);
    my $n = @requests;
    my @more = as_list($block->value('more_headers'), $n);
    my %expect;
    for my $k (qw(error_code error_code_like response_headers response_headers_like response_body response_body_like)) {
        $expect{$k} = [as_list($block->value($k), $n)];
    }
    my $timeout = ($block->value('timeout') // 5) + $ValgrindExtraTimeout;
    # As upstream: after each request, the log checks run on what error.log gained since the
    # previous check, with nginx still running (a request's own lines are written before the
    # connection closes).
    my $log_pos = 0;
    for my $i (0 .. $#requests) {
        my $request = substitute($requests[$i], 'request');
        my $res = http_request($request, substitute($more[$i], 'more_headers'), $timeout);
        my %e = map { $_ => $expect{$_}[$i] } keys %expect;
        my $label = $n > 1 ? " (request " . ($i + 1) . ")" : '';
        check_response($block, $res, $n > 1 ? $i + 1 : 0, \%e);
        my $log = read_file("$ServRoot/logs/error.log");
        my $portion = substr($log, $log_pos);
        $log_pos = length $log;
        check_log($block, $portion, $label);
        check_grep_log($block, $portion, $label);
    }
    stop_nginx($pid);
}

sub run_tests {
    my $binary = nginx_binary();
    for my $block (blocks()) {
        # As upstream: `--- skip_eval: COUNT: PERL` skips the block's COUNT tests when PERL is true.
        my $skip = $block->value('skip_eval');
        if (defined $skip && $skip =~ /^\s*(\d+)\s*:\s*(.*)/s) {
            my ($count, $code) = ($1, $2);
            my $should_skip = eval $code;
            die $block->name . " - skip_eval - failed to eval \"$code\": $@" if $@;
            if ($should_skip) {
                SKIP: { Test::More::skip($block->name . " - skip_eval", $count) }
                next;
            }
        }
        run_block($block);
    }
    Test::More::done_testing() if $no_plan;
}

1;
