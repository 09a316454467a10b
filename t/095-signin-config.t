# Configuration of browser sign-in: what nginx -t refuses (naming the directive, file and line)
# and what it warns about. The secret files are made here, outside the server root.
use Test::Nginx::Socket 'no_plan';
use EntraTest;
use File::Path qw(make_path);
use MIME::Base64 qw(encode_base64);

my $dir = ($ENV{TEST_NGINX_SERVROOT} || 't/servroot') . '-signin-files';
make_path($dir);
$dir = File::Spec->rel2abs($dir);
$ENV{TEST_NGINX_SIGNIN_FILES} = $dir;

sub put {
    my ($name, $text, $mode) = @_;
    open my $out, '>', "$dir/$name" or die $!;
    print $out $text;
    close $out;
    chmod $mode // 0600, "$dir/$name";
}
put('secret', "s3cret\n");
put('empty', "\n");
put('keys', encode_base64('k' x 32, '') . "\n" . encode_base64('o' x 48, '') . "\n");
put('keys-readable', encode_base64('k' x 32, '') . "\n", 0644);
put('keys-short', encode_base64('k' x 16, '') . "\n");
put('keys-garbage', "this is not base64!\n");
$ENV{TEST_NGINX_LIVE_STATE} = File::Spec->rel2abs($ENV{ENTRA_LIVE_IDP_STATE});
$ENV{TEST_NGINX_SSL_PORT} = ($ENV{TEST_NGINX_PORT} || 1984) + 5;
for my $pair (['app', 'rsa:2048', 365], ['other', 'rsa:2048', 365], ['soon', 'rsa:2048', 10], ['ec', 'ec -pkeyopt ec_paramgen_curve:P-256', 365]) {
    my ($name, $kind, $days) = @$pair;
    system("openssl req -x509 -newkey $kind -nodes -subj /CN=$name -days $days"
        . " -keyout $dir/$name.key -out $dir/$name.crt >/dev/null 2>&1") == 0
        or die "openssl failed to make a test certificate\n";
    chmod 0600, "$dir/$name.key";
}

our $SIGNIN = <<'CONF';
        client_secret_file $TEST_NGINX_SIGNIN_FILES/secret;
        session_key_file   $TEST_NGINX_SIGNIN_FILES/keys;
CONF

log_level('info');
use_live_defaults();
run_tests();

__DATA__

=== TEST 1: a provider with every sign-in directive is accepted
--- http_config eval
live_provider(
    'client_certificate $TEST_NGINX_SIGNIN_FILES/app.crt $TEST_NGINX_SIGNIN_FILES/app.key;',
    'session_key_file $TEST_NGINX_SIGNIN_FILES/keys;',
    'redirect_uri https://$host/.entra/callback;',
    'scopes openid profile email offline_access;',
    'session_cookie __Host-app;',
    'session_lifetime 4h;',
    'session_idle_timeout 30m;',
    'session_claims department employeeid;',
    'post_logout_redirect https://app.example/signed-out;',
    'frontchannel_logout_uri /.entra/frontchannel;',
)
--- config
    location /app { entra_auth live session; proxy_pass http://backend; }
    location /api { entra_auth live any; proxy_pass http://backend; }
    location = /logout { entra_auth live session; entra_logout; }
--- request
GET /api
--- error_code: 401
--- no_error_log
[emerg]
readable by other users

=== TEST 2: a session mode needs a client credential
--- http_config eval
live_provider('session_key_file $TEST_NGINX_SIGNIN_FILES/keys;')
--- config
    location /app { entra_auth live session; proxy_pass http://backend; }
--- must_die
--- error_log eval
qr/\[emerg\] .*entra_auth in \S+nginx\.conf:\d+: entra_provider "live" is used for browser sign-in and needs a client credential \(client_secret_file or client_certificate\)/

=== TEST 3: and session_key_file
--- http_config eval
live_provider('client_secret_file $TEST_NGINX_SIGNIN_FILES/secret;')
--- config
    location /app { entra_auth live any; proxy_pass http://backend; }
--- must_die
--- error_log eval
qr/\[emerg\] .*entra_provider "live" is used for browser sign-in and needs session_key_file/

=== TEST 4: a provider with jwks_file has no authorize endpoint
--- http_config eval
provider('dev', 'client_secret_file $TEST_NGINX_SIGNIN_FILES/secret;', 'session_key_file $TEST_NGINX_SIGNIN_FILES/keys;')
--- config
    location /app { entra_auth dev session; proxy_pass http://backend; }
--- must_die
--- error_log eval
qr/\[emerg\] .*entra_provider "dev" is used for browser sign-in and needs metadata discovery for its authorize endpoint/

=== TEST 5: bearer locations need none of it
--- http_config eval
live_provider()
--- config
    location /api { entra_auth live; proxy_pass http://backend; }
--- error_code: 401
--- no_error_log
[emerg]

=== TEST 6: one client credential only
--- http_config eval
live_provider('client_secret_file $TEST_NGINX_SIGNIN_FILES/secret;',
    'client_certificate $TEST_NGINX_SIGNIN_FILES/app.crt $TEST_NGINX_SIGNIN_FILES/app.key;')
--- must_die
--- error_log eval
qr/\[emerg\] .*"client_secret_file" and "client_certificate" exclude each other: give one client credential in \S+nginx\.conf:\d+/

=== TEST 7: an empty secret file
--- http_config eval
live_provider('client_secret_file $TEST_NGINX_SIGNIN_FILES/empty;')
--- must_die
--- error_log eval
qr/\[emerg\] .*"client_secret_file" "\S+empty": the file is empty in \S+nginx\.conf:\d+/

=== TEST 8: a missing secret file
--- http_config eval
live_provider('client_secret_file $TEST_NGINX_SIGNIN_FILES/nosuch;')
--- must_die
--- error_log eval
qr/\[emerg\] .*"client_secret_file" "\S+nosuch": No such file or directory/

=== TEST 9: a key line that is not base64
--- http_config eval
live_provider('session_key_file $TEST_NGINX_SIGNIN_FILES/keys-garbage;')
--- must_die
--- error_log eval
qr/\[emerg\] .*"session_key_file" "\S+keys-garbage": line 1 is not base64/

=== TEST 10: a key line under 32 bytes
--- http_config eval
live_provider('session_key_file $TEST_NGINX_SIGNIN_FILES/keys-short;')
--- must_die
--- error_log eval
qr/\[emerg\] .*"session_key_file" "\S+keys-short": line 1 holds 16 bytes, 32 at least/

=== TEST 11: a key file that other users can read is accepted with a warning
--- http_config eval
live_provider('client_secret_file $TEST_NGINX_SIGNIN_FILES/secret;', 'session_key_file $TEST_NGINX_SIGNIN_FILES/keys-readable;')
--- config
    location /app { entra_auth live session; proxy_pass http://backend; }
--- request
GET /app
--- error_code: 401
--- error_log eval
qr/\[warn\] .*"session_key_file" "\S+keys-readable" is readable by other users \(chmod 600 it\)/

=== TEST 12: a certificate whose key is another's
--- http_config eval
live_provider('client_certificate $TEST_NGINX_SIGNIN_FILES/app.crt $TEST_NGINX_SIGNIN_FILES/other.key;')
--- must_die
--- error_log eval
qr/\[emerg\] .*"client_certificate" "\S+app\.crt" "\S+other\.key": the private key does not belong to the certificate/

=== TEST 13: two providers signing in on one server with the same callback
--- http_config eval
live_provider($main::SIGNIN) . live_provider($main::SIGNIN) =~ s/entra_provider live/entra_provider second/r
--- config
    location /a { entra_auth live session; proxy_pass http://backend; }
    location /b { entra_auth second session; proxy_pass http://backend; }
--- must_die
--- error_log eval
qr/\[emerg\] .*entra_providers "live" \(\S+nginx\.conf:\d+\) and "second" \(\S+nginx\.conf:\d+\) sign in on one server with the same redirect_uri/

=== TEST 14: with their own paths and cookies they may
--- http_config eval
live_provider($main::SIGNIN) . live_provider($main::SIGNIN, 'redirect_uri /second/callback;',
    'frontchannel_logout_uri /second/logout;', 'session_cookie second;') =~ s/entra_provider live/entra_provider second/r
--- config
    location /a { entra_auth live session; proxy_pass http://backend; }
    location /b { entra_auth second session; proxy_pass http://backend; }
--- request
GET /b
--- error_code: 401
--- no_error_log
[emerg]

=== TEST 15: an unknown mode
--- http_config eval
live_provider($main::SIGNIN)
--- config
    location /a { entra_auth live cookie; proxy_pass http://backend; }
--- must_die
--- error_log eval
qr/\[emerg\] .*invalid "entra_auth" "cookie": the mode is "session" or "any" \(bearer tokens alone: no mode\) in \S+nginx\.conf:\d+/

=== TEST 16: entra_require_scope can never pass with a session
--- http_config eval
live_provider($main::SIGNIN)
--- config
    location /a { entra_auth live session; entra_require_scope Orders.Read; proxy_pass http://backend; }
--- request
GET /a
--- error_code: 401
--- error_log eval
qr/\[warn\] .*entra_require_scope: a session has no scp; it can never pass/

=== TEST 17: the scopes must include openid
--- http_config eval
live_provider($main::SIGNIN, 'scopes profile email;')
--- must_die
--- error_log eval
qr/\[emerg\] .*invalid "scopes" "profile": the scopes must include openid/

=== TEST 18: a certificate that expires within 30 days is accepted with a warning
--- http_config eval
live_provider('client_certificate $TEST_NGINX_SIGNIN_FILES/soon.crt $TEST_NGINX_SIGNIN_FILES/soon.key;',
    'session_key_file $TEST_NGINX_SIGNIN_FILES/keys;')
--- config
    location /a { entra_auth live session; proxy_pass http://backend; }
--- request
GET /a
--- error_code: 401
--- error_log eval
qr/\[warn\] .*"client_certificate" "\S+soon\.crt" expires in (9|10) days: upload its successor to the app registration/

=== TEST 19: client_certificate takes RSA keys only
--- http_config eval
live_provider('client_certificate $TEST_NGINX_SIGNIN_FILES/ec.crt $TEST_NGINX_SIGNIN_FILES/ec.key;')
--- must_die
--- error_log eval
qr/\[emerg\] .*"client_certificate" "\S+ec\.crt" "\S+ec\.key": the private key is not an RSA key in PKCS#1 or PKCS#8/

=== TEST 20: entra_require_claim on a claim a session does not keep
--- http_config eval
live_provider($main::SIGNIN, 'session_claims department;')
--- config
    location /a {
        entra_auth live session;
        entra_require_claim department Finance;
        entra_require_claim jobTitle Auditor;
        proxy_pass http://backend;
    }
--- request
GET /a
--- error_code: 401
--- error_log eval
qr/\[warn\] .*entra_require_claim "jobTitle": a session of entra_provider "live" does not keep this claim \(add it to session_claims\)/
--- no_error_log
"department": a session

=== TEST 21: a session_cookie without __Host- on a server with an ssl listener
--- http_config eval
live_provider($main::SIGNIN, 'session_cookie appsession;') . <<'CONF'
    server {
        listen 127.0.0.1:$TEST_NGINX_SSL_PORT ssl;
        ssl_certificate     $TEST_NGINX_LIVE_STATE/tls-cert.pem;
        ssl_certificate_key $TEST_NGINX_LIVE_STATE/tls-key.pem;
        location / { entra_auth live session; return 204; }
    }
CONF
--- config
    location /a { entra_auth live session; proxy_pass http://backend; }
--- request
GET /a
--- error_code: 401
--- error_log eval
qr/\[warn\] .*session_cookie "appsession" of entra_provider "live" \(used in \S+nginx\.conf:\d+\) lacks the __Host- prefix on a server with an ssl listener/


=== TEST 22: session_revalidate 0 would loop through prompt=none forever
--- http_config eval
live_provider($main::SIGNIN, 'session_revalidate 0;')
--- config
    location /a { entra_auth live session; proxy_pass http://backend; }
--- must_die
--- error_log eval
qr/\[emerg\] .*"session_revalidate" value "0" must be at least 1s in \S+nginx\.conf:\d+/

=== TEST 23: a session_lifetime of 0
--- http_config eval
live_provider($main::SIGNIN, 'session_lifetime 0s;')
--- config
    location /a { entra_auth live session; proxy_pass http://backend; }
--- must_die
--- error_log eval
qr/\[emerg\] .*"session_lifetime" value "0s" must be at least 1s in \S+nginx\.conf:\d+/

=== TEST 24: a session_idle_timeout of 0
--- http_config eval
live_provider($main::SIGNIN, 'session_idle_timeout 0;')
--- config
    location /a { entra_auth live session; proxy_pass http://backend; }
--- must_die
--- error_log eval
qr/\[emerg\] .*"session_idle_timeout" value "0" must be at least 1s in \S+nginx\.conf:\d+/

=== TEST 25: a redirect_uri with a query string would never be matched
--- http_config eval
live_provider($main::SIGNIN, 'redirect_uri /.entra/callback?x=1;')
--- config
    location /a { entra_auth live session; proxy_pass http://backend; }
--- must_die
--- error_log eval
qr/\[emerg\] .*"redirect_uri" value "\/\.entra\/callback\?x=1" .*no query string.* in \S+nginx\.conf:\d+/

=== TEST 26: nor a frontchannel_logout_uri with one
--- http_config eval
live_provider($main::SIGNIN, 'frontchannel_logout_uri /.entra/logout?from=entra;')
--- config
    location /a { entra_auth live session; proxy_pass http://backend; }
--- must_die
--- error_log eval
qr/\[emerg\] .*"frontchannel_logout_uri" value "\/\.entra\/logout\?from=entra" .*no query string.* in \S+nginx\.conf:\d+/

=== TEST 27: http://$host is not a loopback address: any Host header could name it
--- http_config eval
live_provider($main::SIGNIN, 'redirect_uri http://$host/.entra/callback;')
--- config
    location /a { entra_auth live session; proxy_pass http://backend; }
--- must_die
--- error_log eval
qr/\[emerg\] .*"redirect_uri" value "http:\/\/\$host\/\.entra\/callback" must be an https:\/\/ URL, or http:\/\/ on a loopback address in \S+nginx\.conf:\d+/

=== TEST 28: two providers with one cookie name on one host name, on different ports
--- http_config eval
live_provider($main::SIGNIN) . (live_provider($main::SIGNIN, 'redirect_uri /second/callback;',
    'frontchannel_logout_uri /second/logout;') =~ s/entra_provider live/entra_provider second/r) . <<'CONF'
    server {
        listen 127.0.0.1:$TEST_NGINX_SSL_PORT;
        server_name localhost;
        location / { entra_auth second session; return 204; }
    }
CONF
--- config
    location /a { entra_auth live session; proxy_pass http://backend; }
--- must_die
--- error_log eval
qr/\[emerg\] .*entra_providers "(live|second)" \(\S+nginx\.conf:\d+\) and "(live|second)" \(\S+nginx\.conf:\d+\) sign in on host name "localhost" with the same session_cookie "__Host-entra"/

=== TEST 29: on another host name they may
--- http_config eval
live_provider($main::SIGNIN) . (live_provider($main::SIGNIN, 'redirect_uri /second/callback;',
    'frontchannel_logout_uri /second/logout;') =~ s/entra_provider live/entra_provider second/r) . <<'CONF'
    server {
        listen 127.0.0.1:$TEST_NGINX_SSL_PORT;
        server_name second.example;
        location / { entra_auth second session; return 204; }
    }
CONF
--- config
    location /a { entra_auth live session; proxy_pass http://backend; }
--- request
GET /a
--- error_code: 401
--- no_error_log
[emerg]
