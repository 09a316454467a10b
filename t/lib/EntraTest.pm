package EntraTest;

# Helpers shared by the suites in t/: minting tokens with the development IdP, and the default
# provider, backend and protected location that a block gets unless it says otherwise.

use strict;
use warnings;

use JSON::PP ();
use MIME::Base64 qw(encode_base64url);
use MIME::Base64 ();
use HTTP::Tiny;
use IO::Select;
use IO::Socket::INET;
use Time::HiRes qw(time);
use parent 'Exporter';

our @EXPORT = qw(start_nginx write_nginx_conf reload_nginx send_api_request read_answer concurrent_statuses token bearer token_of_length stranger_token kid_of_kind kid_with_issuer idp idp_oid b64url replace_part provider
    live_idp live_bearer live_provider idp_admin $TENANT $CLIENT_ID $OTHER_TENANT use_defaults use_live_defaults);

# Test::Base evaluates `--- name eval` sections in package Test::Base::Filter, so the helpers
# are made visible there as well as in the test file.
sub import {
    __PACKAGE__->export_to_level(1, @_);
    no strict 'refs';
    *{"Test::Base::Filter::$_"} = \&{$_} for grep { /^\w/ } @EXPORT;
}

our $TENANT = '9f2b7c1e-3d4a-4b8e-a6f0-5c2d8e7b1a93';
our $CLIENT_ID = '6e1c4d2a-8b3f-4a7e-9c05-2f7d1b3e8a64';
our $OTHER_TENANT = '0d8e5b2a-7c4f-4e19-b3a6-1f5d9c2e8a70';

for my $var (qw(ENTRA_DEV_IDP ENTRA_DEV_IDP_STATE TEST_NGINX_ENTRA_JWKS)) {
    die "$var is not set: run the suites with scripts/test\n" unless $ENV{$var};
}
$ENV{TEST_NGINX_BACKEND_PORT} //= ($ENV{TEST_NGINX_PORT} || 1984) + 1;

# Runs the development IdP; returns what it printed, without the final newline.
sub idp { idp_with_state($ENV{ENTRA_DEV_IDP_STATE}, @_) }

sub idp_with_state {
    my ($state, @args) = @_;
    open my $fh, '-|', $ENV{ENTRA_DEV_IDP}, @args, '--state', $state
        or die "cannot run the IdP: $!";
    local $/;
    my $out = <$fh>;
    close $fh;
    die "entra-dev-idp @args failed\n" if $?;
    $out =~ s/\n\z//;
    return $out;
}

sub token { idp('mint', @_) }

# For suites outside the Test::Nginx format: runs nginx in the foreground with a prefix and a
# configuration file, and returns its pid once it accepts connections on $port.
sub start_nginx {
    my ($prefix, $conf, $port) = @_;
    my $nginx = $ENV{TEST_NGINX_BINARY} || 'nginx';
    my $pid = fork // die "fork: $!";
    if (!$pid) {
        open STDERR, '>', "$prefix/logs/stderr.log" or die;
        exec $nginx, '-p', "$prefix/", '-c', $conf, '-g', 'daemon off;' or die;
    }
    my $deadline = time + 10;
    until (IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port, Proto => 'tcp')) {
        die "nginx did not start with $conf\n" if time > $deadline || waitpid($pid, 1) == $pid;
        select undef, undef, undef, 0.01;
    }
    return $pid;
}

# For those suites: writes $prefix/conf/nginx.conf, one worker loading the module, a provider
# block ($TEST_NGINX_* filled in), and a server on $port whose /api the provider guards (proxied
# to /backend); `level` sets the error log's, `server` adds lines to the server, `workers` sets
# worker_processes, `connections` worker_connections (64), `listen` adds parameters to the
# server's listen and `main` lines to the main context.
sub write_nginx_conf {
    my ($prefix, $port, $provider, %opt) = @_;
    my $module = (split ' ', $ENV{TEST_NGINX_LOAD_MODULES} || '')[0] or die "TEST_NGINX_LOAD_MODULES is not set\n";
    $provider =~ s/\$(TEST_NGINX_\w+)/$ENV{$1}/g;
    my $user = $> == 0 ? 'user root;' : '';
    my $level = $opt{level} // 'info';
    my $server = $opt{server} // '';
    my $workers = $opt{workers} // 1;
    my $listen = $opt{listen} ? " $opt{listen}" : '';
    my $connections = $opt{connections} // 64;
    my $main = $opt{main} // '';
    open my $conf, '>', "$prefix/conf/nginx.conf" or die $!;
    print $conf <<"CONF";
load_module $module;
$user
worker_processes $workers;
error_log logs/error.log $level;
pid logs/nginx.pid;
$main
events { worker_connections $connections; }
http {
$provider
    server {
        listen 127.0.0.1:$port$listen;
        location /api { entra_auth live; proxy_pass http://127.0.0.1:$port/backend; }
        location /backend { return 200 "backend\\n"; }
$server
    }
}
CONF
    close $conf;
}

# Sends `GET /api` with a bearer token on a connection of its own and returns the socket without
# waiting for the answer (a request that will be parked).
sub send_api_request {
    my ($port, $token) = @_;
    my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port, Proto => 'tcp') or die $!;
    print $sock "GET /api HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer $token\r\nConnection: close\r\n\r\n";
    return $sock;
}

# Sends `GET $path` with each bearer token of @tokens at once, each on a connection of its own,
# then reads every answer (waiting $seconds at most for each part); returns how many got each
# status (`none` for no answer).
sub concurrent_statuses {
    my ($port, $path, $seconds, @tokens) = @_;
    my @socks = map {
        my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port, Proto => 'tcp') or die $!;
        print $sock "GET $path HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer $_\r\nConnection: close\r\n\r\n";
        $sock;
    } @tokens;
    my %codes;
    for my $sock (@socks) {
        my ($code) = read_answer($sock, $seconds) =~ m{^HTTP/1\.1 (\d+) };
        $codes{ $code // 'none' }++;
    }
    return %codes;
}

# Everything the server sends on $sock until it closes, waiting $seconds at most for each part.
sub read_answer {
    my ($sock, $seconds) = @_;
    my $answer = '';
    my $select = IO::Select->new($sock);
    while ($select->can_read($seconds)) {
        my $n = sysread $sock, my $chunk, 4096;
        last unless $n;
        $answer .= $chunk;
    }
    return $answer;
}

sub nginx_workers { my ($pid) = @_; `pgrep -P $pid` =~ /(\d+)/g }

# Sends nginx (master $pid, logging to $prefix/logs/error.log) a HUP and returns a worker of the
# new configuration once the old ones have closed their listening sockets (each says so), so
# that the next connection is the new configuration's; with `alone`, once they are gone.
sub reload_nginx {
    my ($pid, $prefix, $alone) = @_;
    my %old = map { $_ => 1 } nginx_workers($pid);
    kill 'HUP', $pid;
    my $deadline = time + 10;
    while (1) {
        my @now = nginx_workers($pid);
        my @new = grep { !$old{$_} } @now;
        my $log = do { open my $in, '<', "$prefix/logs/error.log" or die $!; local $/; <$in> };
        my $closed = !grep { $log !~ /$_#$_: gracefully shutting down/ } keys %old;
        return $new[0] if @new && ($alone ? @new == @now : $closed);
        die "no new worker after the reload\n" if time > $deadline;
        select undef, undef, undef, 0.02;
    }
}

# The live IdP that scripts/test serves at $TEST_NGINX_IDP_URL (HTTP) and
# $TEST_NGINX_IDP_HTTPS_URL (HTTPS, test CA $TEST_NGINX_IDP_CA), for providers that fetch keys.
sub live_idp { idp_with_state($ENV{ENTRA_LIVE_IDP_STATE}, @_) }

sub live_bearer { 'Authorization: Bearer ' . live_idp('mint', @_) }

# Asks the live IdP's /_admin/ directly (not through nginx); returns the answer's body.
sub idp_admin {
    my ($what) = @_;
    my $res = HTTP::Tiny->new(timeout => 10)->get("$ENV{TEST_NGINX_IDP_URL}/_admin/$what");
    die "IdP admin $what: $res->{status} $res->{content}\n" unless $res->{success};
    return $res->{content};
}

# An `entra_provider live` block that discovers its keys from the live IdP; lines given
# replace the defaults of the same directive.
sub live_provider {
    my @given = @_;
    my %named = map { (split ' ', $_)[0] => 1 } @given;
    my @defaults = grep { !$named{ (split ' ', $_)[0] } }
        ("tenant $TENANT;", "client_id $CLIENT_ID;", 'authority $TEST_NGINX_IDP_URL;', 'fetch_timeout 3s;');
    my $lines = join '', map { "        $_\n" } @defaults, @given;
    return "    entra_provider live {\n$lines    }\n";
}

sub bearer { 'Authorization: Bearer ' . token(@_) }

# A valid token exactly $length bytes long, padded with a claim (and, where base64 cannot reach
# the length from the payload alone, a header parameter).
sub token_of_length {
    my ($length, @mint) = @_;
    for my $extra (0 .. 3) {
        my @header = $extra ? ('--header', 'x="' . ('h' x $extra) . '"') : ();
        my $pad = 0;
        for (1 .. 20) {
            my $t = token(@mint, @header, '--claim', 'pad="' . ('p' x $pad) . '"');
            return $t if length($t) == $length;
            my $next = $pad + int(($length - length $t) * 3 / 4);
            last if $next == $pad || $next < 0;
            $pad = $next;
        }
    }
    die "no token of $length bytes\n";
}

# A token from another IdP whose keys the module does not know (same tenant and audience).
sub stranger_token {
    my $state = "$ENV{ENTRA_DEV_IDP_STATE}-stranger";
    idp_with_state($state, 'init') unless -e "$state/idp.json";
    return idp_with_state($state, 'mint', @_);
}

sub b64url { encode_base64url($_[0]) }

# The oid the IdP gives a user name (read back from a token it mints).
sub idp_oid {
    my ($user) = @_;
    my $payload = (split /\./, token('--user', $user))[1];
    return JSON::PP::decode_json(MIME::Base64::decode_base64url($payload))->{oid};
}

# A valid token with part 0 (header), 1 (payload) or 2 (signature) replaced as given.
sub replace_part {
    my ($index, $text, @mint) = @_;
    my @parts = split /\./, token(@mint);
    $parts[$index] = $text;
    return join '.', @parts;
}

sub idp_keys {
    open my $fh, '<', "$ENV{ENTRA_DEV_IDP_STATE}/idp.json" or die "no IdP state: $!";
    local $/;
    return @{ JSON::PP::decode_json(<$fh>)->{keys} };
}

# The id of the first key of a kind (RSA, P-256, Ed25519) that names no issuer.
sub kid_of_kind {
    my ($kind) = @_;
    my ($key) = grep { $_->{kind} eq $kind && !$_->{issuer} } idp_keys();
    return $key ? $key->{kid} : die "the IdP has no $kind key\n";
}

# The id of the key that names its own issuer (another tenant's).
sub kid_with_issuer {
    my ($key) = grep { $_->{issuer} } idp_keys();
    return $key ? $key->{kid} : die "the IdP has no key with an issuer\n";
}

# An `entra_provider` block for the IdP's app: `provider()` is the default `dev`, and
# `provider('other', 'leeway 0;', ...)` adds lines (a first argument without `;` is the name).
sub provider {
    my $name = @_ && $_[0] !~ /;/ ? shift : 'dev';
    my $lines = join '', map { "        $_\n" } "tenant     $TENANT;", "client_id  $CLIENT_ID;",
        'jwks_file  $TEST_NGINX_ENTRA_JWKS;', @_;
    return "    entra_provider $name {\n$lines    }\n";
}

our $PROVIDER = provider();

our $BACKEND = <<'CONF';
    upstream backend {
        server 127.0.0.1:$TEST_NGINX_BACKEND_PORT;
    }
    server {
        listen 127.0.0.1:$TEST_NGINX_BACKEND_PORT;
        entra_auth off;
        location / {
            return 200 "backend $uri oid=$http_x_oid\n";
        }
    }
CONF

our $PROTECTED = <<'CONF';
    location /api {
        entra_auth dev;
        proxy_pass http://backend;
    }
CONF

# Unless a block says otherwise: the `dev` provider and a backend in http_config, a protected
# /api location in config, and `GET /api` as the request.
sub use_defaults {
    main::add_block_preprocessor(sub {
        my $block = shift;
        my $http = $block->http_config // '';
        $http = $PROVIDER . $http unless $http =~ /entra_provider dev\b/ || defined $block->no_default_provider;
        $http .= $BACKEND unless $http =~ /upstream backend\b/;
        $block->set_value(http_config => $http);
        $block->set_value(config => $PROTECTED) unless defined $block->config;
        $block->set_value(request => 'GET /api') unless defined $block->request;
    });
}

our $LIVE_LOCATIONS = <<'CONF';
    location /api {
        entra_auth live;
        proxy_pass http://backend;
    }
    # The live IdP's controls and counters, through nginx, between requests of a block.
    location /idp/ {
        proxy_pass $TEST_NGINX_IDP_URL/;
    }
    location = /status {
        entra_status;
    }
CONF

# For suites of live keys: the IdP back to normal with its counters at zero before each block
# (block preprocessors run just before the block, with either runner), the `live` provider,
# and /api guarded by it.
sub use_live_defaults {
    main::add_block_preprocessor(sub {
        my $block = shift;
        idp_admin('reset');
        my $http = $block->http_config // live_provider();
        $http .= $BACKEND unless $http =~ /upstream backend\b/;
        $block->set_value(http_config => $http);
        $block->set_value(config => $LIVE_LOCATIONS) unless defined $block->config;
        $block->set_value(request => 'GET /api') unless defined $block->request;
    });
}

1;
