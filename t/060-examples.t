# The example configurations in nginx-conf/ run as they are (ports moved off 8080/8081), so
# they cannot rot: nginx -t accepts them without a warning, and each answers as its comments say.
use strict;
use warnings;

use File::Path qw(make_path remove_tree);
use File::Copy qw(copy);
use HTTP::Tiny;
use Test::More;
use EntraTest;
use MIME::Base64 ();
use JSON::PP ();

my $nginx = $ENV{TEST_NGINX_BINARY} || 'nginx';
my $module = (split ' ', $ENV{TEST_NGINX_LOAD_MODULES} || '')[0] or die "TEST_NGINX_LOAD_MODULES is not set\n";
my $port = ($ENV{TEST_NGINX_PORT} || 1984) + 10;
my $prefix = ($ENV{TEST_NGINX_SERVROOT} || 't/servroot') . '-examples';
my $http = HTTP::Tiny->new(timeout => 5, max_redirect => 0);

sub prepare {
    my ($name) = @_;
    remove_tree($prefix);
    make_path("$prefix/conf", "$prefix/logs", "$prefix/modules");
    symlink $module, "$prefix/modules/ngx_http_entra_module.so" or die "symlink: $!";
    copy($ENV{TEST_NGINX_ENTRA_JWKS}, "$prefix/conf/entra-keys.json") or die "copy: $!";
    # What scripts/demo writes for browser sign-in, readable by nginx only.
    make_path("$prefix/conf/entra");
    for (['client-secret', live_idp('client-secret') . "\n"], ['session.keys', MIME::Base64::encode_base64('d' x 32)]) {
        open my $f, '>', "$prefix/conf/entra/$_->[0]" or die $!;
        print $f $_->[1];
        close $f;
        chmod 0600, "$prefix/conf/entra/$_->[0]";
    }
    open my $in, '<', "nginx-conf/$name" or die "$name: $!";
    my $conf = do { local $/; <$in> };
    $conf =~ s/127\.0\.0\.1:8080/127.0.0.1:$port/g;
    $conf =~ s/127\.0\.0\.1:8081/'127.0.0.1:' . ($port + 1)/ge;
    $conf =~ s/127\.0\.0\.1:8082/'127.0.0.1:' . ($port + 2)/ge;
    # The development IdP the demo expects on 9400 is the suites' live IdP here.
    $conf =~ s{http://127\.0\.0\.1:9400}{$ENV{TEST_NGINX_IDP_URL}}g;
    $conf = "user root;\n$conf" if $> == 0;
    open my $out, '>', "$prefix/conf/$name" or die $!;
    print $out $conf;
    close $out;
}

# A request ("METHOD /path", GET unless named) with a token minted with these arguments (by
# the live IdP for a configuration that discovers its keys there), with the headers of a hash,
# or with no token for undef.
sub get {
    my ($path, $token_args, $live) = @_;
    my $mint = $live ? sub { live_idp('mint', @_) } : \&token;
    my %headers = ref $token_args eq 'HASH' ? %$token_args
        : $token_args ? (Authorization => 'Bearer ' . $mint->(@$token_args)) : ();
    my $method = $path =~ s/^([A-Z]+) // ? $1 : 'GET';
    # A path of ":N/..." goes to the example's port 8080 + N.
    my ($offset, $rest) = $path =~ m{^:(\d+)(/.*)$};
    my $url = defined $offset ? "http://127.0.0.1:" . ($port + $offset) . $rest : "http://127.0.0.1:$port$path";
    my %body = $method =~ /^(POST|PUT)$/ ? (content => '{}') : ();
    return $http->request($method, $url, { headers => \%headers, %body });
}

# Grafana's identity headers as a client might forge them, with bob's token.
my %forged = ('X-WEBAUTH-USER' => 'admin', 'X-WEBAUTH-ROLE' => 'Admin', 'X-WEBAUTH-GROUPS' => 'x');

# Each example with the requests that show what it does: [path, mint arguments or undef, status, body regex].
my %cases = (
    'demo.conf' => [
        ['/api/orders', [], 200, qr/"oid": "[0-9a-f-]{36}", "name": "alice\@contoso\.example"/],
        ['/api/orders', undef, 401],
        ['/api/admin/stats', [], 403],
        # Admins signed in with MFA (the authentication context c1): without it, Entra's claims challenge.
        ['/api/admin/stats', ['--groups', '0b9f3f6e-4a4c-4c1e-9a63-2f1d8f1b57e1'], 401],
        ['/api/admin/stats', ['--groups', '0b9f3f6e-4a4c-4c1e-9a63-2f1d8f1b57e1', '--acrs', 'c1'], 200,
            qr/"oid": "[0-9a-f-]{36}", "name": "alice\@contoso\.example", "groups": "0b9f3f6e-4a4c-4c1e-9a63-2f1d8f1b57e1"/],
        # dana is in 250 groups: her token names none, and Graph says she is an admin.
        ['/api/admin/stats', ['--user', 'dana', '--overage', '--acrs', 'c1'], 200, qr/"groups": "0b9f3f6e-4a4c-4c1e-9a63-2f1d8f1b57e1"/],
        ['/api/admin/stats', ['--user', 'bob', '--overage'], 403],
        ['/admin/', { Accept => 'text/html' }, 302],
        ['/health', undef, 200, qr/^\{"path": "\/health", "status": "ok"\}$/],
        [":2/status", undef, 200, qr/"name":"dev"/],
        ['/', { Accept => 'text/html' }, 302],
        ['/', { Accept => 'application/json' }, 401],
        ['/signed-out', undef, 200, qr/You are signed out/],
    ],
    'api-gateway.conf' => [
        ['/orders', ['--aud', 'api://orders', '--scp', 'Orders.Read'], 200, qr/^\/orders for [0-9a-f-]{36} via /],
        ['/orders', ['--app', 'nightly', '--roles', 'Orders.Read.All'], 200],
        ['/orders', ['--aud', 'api://elsewhere', '--scp', 'Orders.Read'], 401],
        ['/orders/write', ['--scp', 'Orders.Write'], 403],
        ['/orders/write', ['--scp', 'Orders.Write', '--groups', '5c2a9d0b-7e2f-4d43-8c5a-1b2e3f4a5b77'], 200],
        ['/admin', ['--app', 'ops', '--roles', 'Orders.Admin'], 200],
        ['/admin', [], 403],
        ['/health', undef, 200],
    ],
    'audit-log.conf' => [
        ['/reports', ['--groups', '3d6f2a1b-9c8e-4f7a-b5d4-0e1f2a3b4c5d', '--acrs', 'c1'], 200, qr/^\/reports for [0-9a-f-]{36}, request [0-9a-f]{32}$/],
        ['/reports', [], 403],
    ],
    'read-write-api.conf' => [
        ['/orders', ['--roles', 'Orders.Read'], 200, qr/^GET \/orders by [0-9a-f-]{36}$/],
        ['HEAD /orders', ['--roles', 'Orders.Read'], 200],
        ['POST /orders', ['--roles', 'Orders.Read'], 403],
        ['POST /orders', ['--roles', 'Orders.Write'], 200, qr/^POST \/orders by [0-9a-f-]{36}$/],
        ['DELETE /orders/7', ['--roles', 'Orders.Read'], 403],
        ['DELETE /orders/7', ['--roles', 'Orders.Write'], 200],
        ['/orders', ['--roles', 'Orders.Write'], 200],
        ['/orders', [], 403],
        ['POST /orders', undef, 401],
        ['OPTIONS /orders', { Origin => 'https://app.contoso.example', 'Access-Control-Request-Method' => 'POST' }, 204],
    ],
    'grafana.conf' => [
        ['/', ['--groups', '0b9f3f6e-4a4c-4c1e-9a63-2f1d8f1b57e1,5a1e0f3c-7b2d-4e6a-8c9f-1d3b5e7a9c20'], 200,
            qr/^user=alice\@contoso\.example role=Admin groups=0b9f3f6e-4a4c-4c1e-9a63-2f1d8f1b57e1,5a1e0f3c-7b2d-4e6a-8c9f-1d3b5e7a9c20$/],
        ['/', ['--groups', '5a1e0f3c-7b2d-4e6a-8c9f-1d3b5e7a9c20'], 200, qr/ role=Editor /],
        ['/', { Authorization => 'Bearer ' . live_idp('mint', '--user', 'bob'), %forged }, 200,
            qr/^user=bob\@contoso\.example role=Viewer groups=$/],
        ['/', { %forged }, 401],
        ['/', { Accept => 'text/html' }, 302],
    ],
    'two-registrations.conf' => [
        ['/api/orders', ['--aud', 'api://orders-api', '--scp', 'Orders.Read'], 200, qr/^\/api\/orders for alice\@contoso\.example$/],
        ['/api/orders', ['--scp', 'Orders.Read'], 401],
        ['/api/orders', ['--aud', 'api://orders-api', '--scp', 'Orders.Write'], 403],
        ['/', { Accept => 'text/html' }, 302],
        ['/', ['--aud', 'api://orders-api', '--scp', 'Orders.Read'], 401],
    ],
    'multi-tenant.conf' => [
        ['/', ['--tid', $EntraTest::OTHER_TENANT], 200, qr/^tenant \Q$EntraTest::OTHER_TENANT\E$/],
        ['/', ['--tid', 'aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee'], 401],
    ],
);

# What an example leaves behind, checked once its nginx has stopped.
my %afterwards = (
    'audit-log.conf' => sub {
        open my $fh, '<', "$prefix/logs/audit.log" or die "audit.log: $!";
        my @lines = map { JSON::PP::decode_json($_) } <$fh>;
        is(scalar @lines, 2, 'audit-log.conf: one JSON line per request');
        # The cases' tokens name alice, signed in to the IdP's default client app.
        my $claims = JSON::PP::decode_json(MIME::Base64::decode_base64url((split /\./, token())[1]));
        my $oid = $claims->{oid};
        my %common = (client => '127.0.0.1', method => 'GET', uri => '/reports', auth_source => 'bearer',
            oid => $oid, upn => 'alice@contoso.example', tid => $EntraTest::TENANT, app_id => $claims->{azp});
        # Access tokens carry no sign-in time: only a session's shows one.
        %common = (%common, signin_time => '');
        my @expected = ({ %common, status => 200, error => '', auth_contexts => 'c1' },
            { %common, status => 403, error => 'missing_group', auth_contexts => '' });
        for my $i (0, 1) {
            my %got = %{ $lines[$i] || {} };
            like(delete $got{time}, qr/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d$/, "audit-log.conf: line $i: time");
            like(delete $got{request_id}, qr/^[0-9a-f]{32}$/, "audit-log.conf: line $i: request_id");
            is_deeply(\%got, $expected[$i], "audit-log.conf: line $i: who, what and why");
        }
        my $refused = $lines[1]{request_id} // 'none';
        my $error_log = do { open my $e, '<', "$prefix/logs/error.log" or die $!; local $/; <$e> };
        like($error_log, qr/entra: access denied: missing_group \(provider "reports", request_id \Q$refused\E, oid \Q$oid\E/,
            'audit-log.conf: the denial line carries the refused request\'s request_id');
    },
);

opendir my $dir, 'nginx-conf' or die $!;
my @examples = sort grep { /\.conf$/ } readdir $dir;
is_deeply([sort keys %cases], \@examples, 'every example in nginx-conf/ has its cases here');

for my $name (@examples) {
    prepare($name);
    my $test = `$nginx -p $prefix/ -c conf/$name -t 2>&1`;
    is($?, 0, "$name: nginx -t accepts it") or diag $test;
    # (but the one about the development IdP's plain-http address)
    my $warnings = $test =~ s/.*is plain http: for tests and development only.*//gr;
    unlike($warnings, qr/\[(warn|emerg|alert)\]/, "$name: no warning");
    my $pid = start_nginx($prefix, "conf/$name", $port);
    my $live = do { open my $fh, '<', "nginx-conf/$name" or die $!; local $/; <$fh> } =~ /127\.0\.0\.1:9400/;
    for my $case (@{ $cases{$name} }) {
        my ($path, $args, $status, $body) = @$case;
        my $res = get($path, $args, $live);
        my $what = "$name: " . ($path =~ /^[A-Z]/ ? $path : "GET $path") . ' ' . (ref $args eq 'HASH' ? "with @{[ %$args ]}"
            : defined $args ? "with a token (@$args)" : 'without a token');
        is($res->{status}, $status, "$what: $status");
        like($res->{content}, $body, "$what: body") if $body;
    }
    kill 'TERM', $pid;
    waitpid $pid, 0;
    $afterwards{$name}->() if $afterwards{$name};
}

done_testing();
