package EntraBrowser;

# A browser played by hand for the sign-in suites: HTTP::Tiny with no redirects followed, the
# cookies carried in a jar (a hash) explicitly, and the headers of a top-level navigation.

use strict;
use warnings;

use File::Path qw(make_path remove_tree);
use HTTP::Tiny;
use IO::Socket::INET;
use MIME::Base64 qw(encode_base64);
use EntraTest;
use parent 'Exporter';

our @EXPORT = qw(%NAVIGATION browser_origin request navigate send_request cookie_header set_cookies apply_cookies
    query_of sign_in signin_prefix run_nginx log_text faketime_library $FAKETIME_ENV run_nginx_on_clock set_clock);

our %NAVIGATION = (
    Accept => 'text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8',
    'Sec-Fetch-Mode' => 'navigate',
    'Sec-Fetch-Dest' => 'document',
    'Sec-Fetch-Site' => 'none',
);

my $http = HTTP::Tiny->new(timeout => 20, max_redirect => 0, keep_alive => 0);
my $origin;

# Where relative URLs go (http://127.0.0.1:PORT).
sub browser_origin { $origin = $_[0] if @_; $origin }

# Makes $prefix/conf and logs afresh, with the client secret of the live IdP and a fresh session
# key (readable by nginx only) as conf/secret and conf/session.keys.
sub signin_prefix {
    my ($prefix) = @_;
    remove_tree($prefix);
    make_path("$prefix/conf", "$prefix/logs");
    for (['secret', live_idp('client-secret') . "\n"],
         ['session.keys', encode_base64(join('', map { chr int rand 256 } 1 .. 32), '') . "\n"]) {
        open my $out, '>', "$prefix/conf/$_->[0]" or die $!;
        print $out $_->[1];
        close $out;
        chmod 0600, "$prefix/conf/$_->[0]";
    }
}

my (@started, $log_prefix);

# Resets the live IdP, tells it what the suite needs (`/_admin/` requests), and starts nginx with
# $prefix/conf/nginx.conf on $port (stopped when the suite ends); returns nginx's pid.
sub run_nginx {
    my ($prefix, $port, @admin) = @_;
    idp_admin('reset');
    idp_admin($_) for @admin;
    my $pid = start_nginx($prefix, 'conf/nginx.conf', $port);
    push @started, $pid;
    $log_prefix = $prefix;
    return $pid;
}

END { kill 'TERM', $_ for @started }

# The error log of the nginx run_nginx started.
# libfaketime, for suites that move nginx's wall clock (undef when it is not installed).
sub faketime_library {
    (grep { -e } map { "/usr/lib/$_/faketime/libfaketimeMT.so.1" } 'x86_64-linux-gnu', 'aarch64-linux-gnu')[0];
}

# The main-context lines that let nginx's workers keep libfaketime's settings.
our $FAKETIME_ENV = join '', map { "env $_;\n" } qw(FAKETIME_TIMESTAMP_FILE FAKETIME_NO_CACHE FAKETIME_DONT_FAKE_MONOTONIC);

# Moves the clock of an nginx started by run_nginx_on_clock: '+90' is 90 s ahead of now.
my $clock_file;
sub set_clock { open my $out, '>', $clock_file or die $!; print $out "$_[0]\n"; close $out }

# run_nginx with nginx's wall clock (not its monotonic one) read from $prefix/faketime, set to
# now; returns nginx's pid.
sub run_nginx_on_clock {
    my ($prefix, $port, @admin) = @_;
    $clock_file = "$prefix/faketime";
    set_clock('+0') unless -e $clock_file;
    local $ENV{LD_PRELOAD} = faketime_library();
    local $ENV{FAKETIME_TIMESTAMP_FILE} = $clock_file;
    local $ENV{FAKETIME_NO_CACHE} = 1;
    local $ENV{FAKETIME_DONT_FAKE_MONOTONIC} = 1;
    return run_nginx($prefix, $port, @admin);
}

sub log_text { open my $in, '<', "$log_prefix/logs/error.log" or return ''; local $/; <$in> }

sub cookie_header { my %c = @_; join '; ', map { "$_=$c{$_}" } sort keys %c }

sub request {
    my ($method, $url, $cookies, %headers) = @_;
    $url = "$origin$url" if $url =~ m{^/};
    $headers{Cookie} = cookie_header(%$cookies) if $cookies && %$cookies;
    return raw_request($method, $url, %headers) if $headers{Host};
    my $res = $http->request($method, $url, { headers => \%headers });
    Test::More::diag($res->{content}) if $res->{status} == 599;
    return $res;
}

# Sends a request on a connection of its own and returns the socket without waiting for the
# answer (Host from the URL unless given).
sub send_request {
    my ($method, $url, %headers) = @_;
    my ($hostport, $path) = $url =~ m{^http://([^/]+)(/.*)$} or die "not an http URL: $url\n";
    my ($host, $port) = split /:/, $hostport;
    $headers{Host} //= $hostport;
    my $sock = IO::Socket::INET->new(PeerAddr => $host, PeerPort => $port, Proto => 'tcp') or die $!;
    my $head = join '', map { "$_: $headers{$_}\r\n" } sort keys %headers;
    print $sock "$method $path HTTP/1.1\r\n${head}Connection: close\r\n\r\n";
    return $sock;
}

# A request with a Host header of its own (HTTP::Tiny sets it from the URL), over a socket; the
# answer in HTTP::Tiny's form.
sub raw_request {
    my $answer = read_answer(send_request(@_), 20);
    my ($top, $body) = split /\r\n\r\n/, $answer, 2;
    my ($status_line, @lines) = split /\r\n/, $top // '';
    my %res = (status => ($status_line // '') =~ m{^HTTP/1\.\d (\d+)} ? $1 : 599, content => $body // '', headers => {});
    for (@lines) {
        my ($name, $value) = /^([^:]+):\s*(.*)$/ or next;
        $name = lc $name;
        my $h = $res{headers};
        $h->{$name} = exists $h->{$name} ? [ref $h->{$name} ? @{ $h->{$name} } : $h->{$name}, $value] : $value;
    }
    return \%res;
}

sub navigate { my ($url, $cookies, %h) = @_; request('GET', $url, $cookies, %NAVIGATION, %h) }

# The Set-Cookie values of a response, as a list.
sub set_cookies {
    my $v = $_[0]{headers}{'set-cookie'} // [];
    return ref $v ? @$v : ($v);
}

# Applies a response's Set-Cookie lines to a cookie jar.
sub apply_cookies {
    my ($jar, $res) = @_;
    for (set_cookies($res)) {
        my ($name, $value) = /^([^=]+)=([^;]*)/ or next;
        if (/Max-Age=0/) { delete $jar->{$name} } else { $jar->{$name} = $value }
    }
}

sub query_of {
    my ($url) = @_;
    map { my ($k, $v) = split /=/, $_, 2; ($k => $v) } split /&/, (split /\?/, $url, 2)[1] // '';
}

# Navigates to $path, signs in at the IdP (told to approve at once) and comes back through the
# callback; returns the callback's response, the jar and the callback URL.
sub sign_in {
    my ($path, %opt) = @_;
    my $jar = $opt{jar} // {};
    my $start = navigate($path, $jar);
    die "no sign-in redirect: $start->{status}\n" unless $start->{status} == 302;
    apply_cookies($jar, $start);
    my $authorize = request('GET', $start->{headers}{location});
    die "the IdP did not approve: $authorize->{status} $authorize->{content}\n" unless $authorize->{status} == 302;
    my $callback = navigate($authorize->{headers}{location}, $jar);
    apply_cookies($jar, $callback);
    return ($callback, $jar, $authorize->{headers}{location});
}

1;
