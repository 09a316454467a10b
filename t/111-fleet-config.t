# Configuration of entra_shared_store: what nginx -t refuses or warns about, naming the directive,
# file and line; a password never in the URL and never in the log.
use Test::Nginx::Socket 'no_plan';
use EntraTest;
use File::Path qw(make_path);

my $dir = ($ENV{TEST_NGINX_SERVROOT} || 't/servroot') . '-fleet-files';
make_path($dir);
$dir = File::Spec->rel2abs($dir);
$ENV{TEST_NGINX_FLEET_FILES} = $dir;
for (['secret', "s3cret\n", 0600], ['session.keys', "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\n", 0600],
     ['redis.pass', "fleet-password-1\n", 0600], ['open.pass', "fleet-password-2\n", 0644],
     ['two.pass', "one\ntwo\n", 0600], ['not.pem', "hello\n", 0600],
     ['ca.pem', "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n", 0644]) {
    open my $out, '>', "$dir/$_->[0]" or die $!;
    print $out $_->[1];
    close $out;
    chmod $_->[2], "$dir/$_->[0]";
}

log_level('info');
use_live_defaults();
run_tests();

__DATA__

=== TEST 1: a store with every parameter loads
--- http_config eval
"    entra_shared_store rediss://fleet\@127.0.0.1:6399/3 password_file=$ENV{TEST_NGINX_FLEET_FILES}/redis.pass prefix=app:prod;\n"
. live_provider("client_secret_file $ENV{TEST_NGINX_FLEET_FILES}/secret;", "session_key_file $ENV{TEST_NGINX_FLEET_FILES}/session.keys;")
--- config
    location /api { entra_auth live; proxy_pass http://backend; }
--- error_code: 401
--- no_error_log
[emerg]
fleet-password-1

=== TEST 2: a password in the URL is refused
--- http_config eval
"    entra_shared_store redis://fleet:hunter2\@127.0.0.1:6399;\n" . live_provider()
--- config
    location /api { entra_auth live; }
--- must_die
--- error_log eval
qr/\[emerg\] .*"entra_shared_store": the URL holds a password: give it with password_file=path in \S+nginx\.conf:\d+/

=== TEST 3: a URL of another scheme is refused
--- http_config eval
"    entra_shared_store http://127.0.0.1:6399;\n" . live_provider()
--- config
    location /api { entra_auth live; }
--- must_die
--- error_log eval
qr/\[emerg\] .*"entra_shared_store": "http:\/\/127\.0\.0\.1:6399" is not a URL of the form redis:\/\/\[user\@\]host\[:port\]\[\/db\] \(or rediss:\/\/\) in \S+nginx\.conf:\d+/

=== TEST 4: a database that is no number
--- http_config eval
"    entra_shared_store redis://127.0.0.1:6399/cache;\n" . live_provider()
--- config
    location /api { entra_auth live; }
--- must_die
--- error_log eval
qr/\[emerg\] .*"entra_shared_store": the URL's database "cache" is not a number in \S+nginx\.conf:\d+/

=== TEST 5: an unknown parameter
--- http_config eval
"    entra_shared_store redis://127.0.0.1:6399 timeout=1s;\n" . live_provider()
--- config
    location /api { entra_auth live; }
--- must_die
--- error_log eval
qr/\[emerg\] .*invalid "entra_shared_store" "timeout=1s": the parameters are password_file=path, tls, ca_file=path and prefix=name in \S+nginx\.conf:\d+/

=== TEST 6: a password file others can read is warned about
--- http_config eval
"    entra_shared_store redis://127.0.0.1:6399 password_file=$ENV{TEST_NGINX_FLEET_FILES}/open.pass;\n" . live_provider()
--- config
    location /api { entra_auth live; proxy_pass http://backend; }
--- error_code: 401
--- error_log eval
qr/\[warn\] .*"entra_shared_store password_file" "\S+open\.pass" is readable by other users \(chmod 600 it\) in \S+nginx\.conf:\d+/
--- no_error_log
fleet-password-2

=== TEST 7: a password file of two lines
--- http_config eval
"    entra_shared_store redis://127.0.0.1:6399 password_file=$ENV{TEST_NGINX_FLEET_FILES}/two.pass;\n" . live_provider()
--- config
    location /api { entra_auth live; }
--- must_die
--- error_log eval
qr/\[emerg\] .*"entra_shared_store": the password file holds more than one line in \S+nginx\.conf:\d+/

=== TEST 8: a CA file that holds no certificate
--- http_config eval
"    entra_shared_store rediss://127.0.0.1:6399 ca_file=$ENV{TEST_NGINX_FLEET_FILES}/not.pem;\n" . live_provider()
--- config
    location /api { entra_auth live; }
--- must_die
--- error_log eval
qr/\[emerg\] .*"entra_shared_store": the CA file holds no PEM certificate in \S+nginx\.conf:\d+/

=== TEST 9: a prefix of other characters
--- http_config eval
"    entra_shared_store redis://127.0.0.1:6399 prefix=a/b;\n" . live_provider()
--- config
    location /api { entra_auth live; }
--- must_die
--- error_log eval
qr/\[emerg\] .*"entra_shared_store": prefix "a\/b" must be 1 to 64 letters, digits, '_', '\.', ':' or '-' in \S+nginx\.conf:\d+/

=== TEST 10: one store for all providers
--- http_config eval
"    entra_shared_store redis://127.0.0.1:6399;\n    entra_shared_store redis://127.0.0.1:6398;\n" . live_provider()
--- config
    location /api { entra_auth live; }
--- must_die
--- error_log eval
qr/\[emerg\] .*"entra_shared_store" directive is duplicate in \S+nginx\.conf:\d+/

=== TEST 11: without a session provider the fleet shares nothing, and says so
--- http_config eval
"    entra_shared_store redis://127.0.0.1:6399;\n" . live_provider()
--- config
    location /api { entra_auth live; proxy_pass http://backend; }
--- error_code: 401
--- error_log
"entra_shared_store" is set but no entra_provider has a session_key_file: the fleet shares nothing

=== TEST 12: a CA file without TLS
--- http_config eval
"    entra_shared_store redis://127.0.0.1:6399 ca_file=$ENV{TEST_NGINX_FLEET_FILES}/ca.pem;\n" . live_provider()
--- config
    location /api { entra_auth live; }
--- must_die
--- error_log eval
qr/\[emerg\] .*"entra_shared_store": ca_file= is for TLS: use rediss:\/\/ or add "tls" in \S+nginx\.conf:\d+/
