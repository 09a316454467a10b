# The development IdP points nginx at itself: `init --authority URL` writes the app's files and
# prints an entra_provider block that nginx takes as it is (nginx -t without a warning but the
# plain-http one), and with which a bearer token passes and a browser signs in end to end;
# `provider` prints it again under another name; `help` lists the demo users.
use strict;
use warnings;

use File::Path qw(make_path remove_tree);
use File::Spec;
use HTTP::Tiny;
use IO::Socket::INET;
use Test::More;
use EntraTest;
use EntraBrowser;

my $port = ($ENV{TEST_NGINX_PORT} || 1984) + 220;
my $idp_port = $port + 5;
my $authority = "http://127.0.0.1:$idp_port";
my $prefix = File::Spec->rel2abs(($ENV{TEST_NGINX_SERVROOT} || 't/servroot') . '-dev-idp');
my $state = "$prefix/idp";
my $nginx = $ENV{TEST_NGINX_BINARY} || 'nginx';
remove_tree($prefix);
make_path("$prefix/conf", "$prefix/logs");

sub idp_here { my $out = `$ENV{ENTRA_DEV_IDP} @_ --state $state`; die "entra-dev-idp @_ failed\n" if $?; $out }

my $block = idp_here('init', '--authority', $authority);
like($block, qr/^entra_provider dev \{\n(?:.*\n)*    authority          \Q$authority\E;\n/m, 'init prints a provider block with the authority given');
like($block, qr/^    client_secret_file \Q$state\E\/client-secret;$/m, 'naming the client secret it wrote, by absolute path');
is((stat "$state/client-secret")[2] & 0777, 0600, 'readable by its owner only');
is((stat "$state/session.keys")[2] & 0777, 0600, 'the session key too');
like(idp_here('provider', '--name', 'shop'), qr/^entra_provider shop \{$/m, 'provider prints it again under another name');
my $help = idp_here('help');
my $alice_oid = idp_oid('alice');
like($help, qr/^  alice  oid \Q$alice_oid\E  Alice Example\n\s+groups: 0b9f3f6e-4a4c-4c1e-9a63-2f1d8f1b57e1, 5a1e0f3c-7b2d-4e6a-8c9f-1d3b5e7a9c20$/m,
    'help lists the demo users with their oid and groups');
like($help, qr/^  dana .*\n\s+groups: 250 groups, none in its tokens/m, 'and the user in 250 groups');

my $idp_pid = fork // die "fork: $!";
if (!$idp_pid) {
    open STDOUT, '>', "$prefix/logs/idp.log";
    open STDERR, '>&', \*STDOUT;
    exec $ENV{ENTRA_DEV_IDP}, 'serve', '--state', $state, '--listen', "127.0.0.1:$idp_port" or die "exec: $!";
}
END { kill 'TERM', $idp_pid if $idp_pid }
my $up;
for (1 .. 500) { last if $up = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$idp_port"); select undef, undef, undef, 0.02 }
ok($up, 'the IdP serves at its authority');

my $module = (split ' ', $ENV{TEST_NGINX_LOAD_MODULES} || '')[0] or die "TEST_NGINX_LOAD_MODULES is not set\n";
my $user = $> == 0 ? 'user root;' : '';
open my $conf, '>', "$prefix/conf/nginx.conf" or die $!;
print $conf <<"CONF";
load_module $module;
$user
error_log logs/error.log info;
pid logs/nginx.pid;
events {}
http {
@{[ $block =~ s/^/    /gmr ]}
    server {
        listen 127.0.0.1:$port;
        location /api { entra_auth dev; proxy_set_header X-Upn \$entra_upn; proxy_pass http://127.0.0.1:$port/who; }
        location /app { entra_auth dev session; proxy_set_header X-Upn \$entra_upn; proxy_pass http://127.0.0.1:$port/who; }
        location /who { return 200 "hello \$http_x_upn\\n"; }
    }
}
CONF
close $conf;
my $test = `$nginx -p $prefix/ -c conf/nginx.conf -t 2>&1`;
is($?, 0, 'nginx -t accepts the block as printed') or diag $test;
unlike($test =~ s/.*is plain http: for tests and development only.*//r, qr/\[(warn|emerg)\]/, 'without a warning');

browser_origin("http://127.0.0.1:$port");
my $pid = start_nginx($prefix, 'conf/nginx.conf', $port);
my $token = idp_here('mint', '--user', 'bob');
chomp $token;
my $api = "http://127.0.0.1:$port/api";
is(HTTP::Tiny->new->get($api, { headers => { Authorization => "Bearer $token" } })->{content}, "hello bob\@contoso.example\n",
    "a bearer token of this IdP passes");
is(HTTP::Tiny->new->get($api, { headers => { Authorization => 'Bearer ' . token('--user', 'bob') } })->{status}, 401,
    "one of another state's keys does not");
my $jar = {};
my $start = navigate('/app', $jar);
is($start->{status}, 302, 'a navigation is sent to sign in');
like($start->{headers}{location}, qr/^\Q$authority\E\/$EntraTest::TENANT\/oauth2\/v2\.0\/authorize\?/, 'at the IdP');
apply_cookies($jar, $start);
is(HTTP::Tiny->new->get("$authority/_admin/approve?user=alice")->{status}, 200, 'the IdP approves alice');
my $authorize = request('GET', $start->{headers}{location});
is($authorize->{status}, 302, 'the IdP answers the sign-in');
my $callback = navigate($authorize->{headers}{location}, $jar);
is($callback->{status}, 302, 'the callback sets the session');
apply_cookies($jar, $callback);
my $page = navigate('/app', $jar);
is($page->{status}, 200, 'and the signed-in user gets the page');
like($page->{content}, qr/^hello alice\@contoso\.example$/, 'as alice');
kill 'TERM', $pid;
waitpid $pid, 0;

done_testing();
