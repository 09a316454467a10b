# The module's own paths (the sign-in callback and the front-channel logout URI) pass through the
# server block's own PREACCESS and ACCESS phases: its `deny`, `limit_req` and `auth_basic` apply
# to them, while no location can shadow them and no `entra_auth` applies to them (not even one
# at the server's level). nginx -t warns about auth_basic where Entra's iframe must reach the
# front-channel logout URI.
use strict;
use warnings;

use MIME::Base64 ();
use Test::More;
use EntraTest;
use EntraBrowser;

my $port = ($ENV{TEST_NGINX_PORT} || 1984) + 170;
my $prefix = ($ENV{TEST_NGINX_SERVROOT} || 't/servroot') . '-own-paths';
my ($denied, $limited, $basic, $shadowed, $paged) = map { $port + $_ } 1 .. 5;

signin_prefix($prefix);
browser_origin("http://127.0.0.1:$port");
open my $out, '>', "$prefix/conf/htpasswd" or die $!;
print $out "ops:{PLAIN}s3cret\n";
close $out;

my $app = 'location /app { entra_auth live session; proxy_pass http://127.0.0.1:' . $port . '/backend; }';
my $http = live_provider('client_secret_file secret;', 'session_key_file session.keys;') . <<"SERVERS";
    limit_req_zone \$binary_remote_addr zone=one:1m rate=1r/m;
    limit_req_zone \$binary_remote_addr zone=paged:1m rate=1r/m;
    server {
        listen 127.0.0.1:$denied;
        deny all;
        $app
    }
    server {
        listen 127.0.0.1:$limited;
        limit_req zone=one nodelay;
        $app
    }
    server {
        listen 127.0.0.1:$basic;
        auth_basic "operators";
        auth_basic_user_file htpasswd;
        entra_auth live session;
        location /app { proxy_pass http://127.0.0.1:$port/backend; }
    }
    server {
        listen 127.0.0.1:$paged;
        limit_req zone=paged nodelay;
        error_page 503 \@busy;
        location \@busy { entra_auth live; proxy_pass http://127.0.0.1:$port; }
        $app
    }
    server {
        listen 127.0.0.1:$shadowed;
        location / { entra_auth live session; proxy_pass http://127.0.0.1:$port/backend; }
        location /.entra/ { return 404; }
        location ~ logout { auth_request /nowhere; return 204; }
    }
SERVERS
write_nginx_conf($prefix, $port, $http, server => "        $app\n");
my $nginx = $ENV{TEST_NGINX_BINARY} || 'nginx';
my $checked = `$nginx -p $prefix/ -c conf/nginx.conf -t 2>&1`;
like($checked, qr/\[warn\] .*auth_basic is in force in the server of entra_provider "live" \(used in \S+nginx\.conf:\d+\): its front-channel logout URI "\/\.entra\/logout" passes the server's access checks/,
    'nginx -t warns about auth_basic where Entra\'s iframe must reach the front-channel logout URI');
run_nginx($prefix, $port, 'approve?user=alice');

my $callback = '/.entra/callback?code=c&state=s';
my $logout = '/.entra/logout?sid=0027c5e2-4c19-5a5f-6e19-1f1e7a1b8c2d';
sub at { my ($p, $path, %h) = @_; request('GET', "http://127.0.0.1:$p$path", undef, %h) }

# --- Without a server-level check, both are the module's answers.
is(at($port, $callback)->{status}, 401, 'the callback answers (no attempt of this browser has that state)');
is(at($port, $logout)->{status}, 200, 'the front-channel logout answers');

# --- deny all in the server.
is(at($denied, $callback)->{status}, 403, 'deny all refuses the callback');
is(at($denied, $logout)->{status}, 403, 'and the front-channel logout');

# --- limit_req in the server: one request a minute.
is(at($limited, $logout)->{status}, 200, 'limit_req lets the first front-channel call through');
is(at($limited, $logout)->{status}, 503, 'and refuses the next');
is(at($limited, $callback)->{status}, 503, 'the callback too');

# --- auth_basic in the server (and entra_auth there, which never applies to the module's paths).
my $credentials = 'Basic ' . MIME::Base64::encode_base64('ops:s3cret', '');
my $no_credentials = at($basic, $logout);
is($no_credentials->{status}, 401, 'auth_basic refuses a front-channel call without credentials');
like($no_credentials->{headers}{'www-authenticate'} // '', qr/^Basic realm="operators"/, 'with its challenge');
is(at($basic, $logout, Authorization => $credentials)->{status}, 200, 'and lets it in with them');
my $callback_no_credentials = at($basic, $callback);
is($callback_no_credentials->{status}, 401, 'the callback without credentials: 401');
like($callback_no_credentials->{headers}{'www-authenticate'} // '', qr/^Basic realm="operators"/,
    'from auth_basic, not the module\'s own refusal');
like(at($basic, $callback, Authorization => $credentials)->{content}, qr/state_mismatch/,
    'with them, the module answers it (no redirect to sign in: entra_auth never applies to it)');

# --- A server-level refusal's error_page is an ordinary request: entra_auth applies there, and
# the module's path is not answered a second time.
is(at($paged, $logout)->{status}, 200, 'the first front-channel call through');
my $paged_again = at($paged, $logout);
is($paged_again->{status}, 401, 'the next, refused by limit_req, goes to its error_page, which entra_auth guards');
unlike($paged_again->{content} // '', qr/Signed out/, 'and is not answered as a logout');

# --- Locations never shadow the paths.
is(at($shadowed, $logout)->{status}, 200, 'a regex location with auth_request does not shadow the front-channel logout');
like(at($shadowed, $callback)->{content}, qr/state_mismatch/, 'a prefix location that returns 404 does not shadow the callback');

unlike(log_text(), qr/\[(alert|crit|emerg)\]/, 'no alert, crit or emerg line in the error log');

done_testing();
