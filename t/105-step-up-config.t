# Configuration of step-up: what nginx -t refuses or warns about in entra_require_auth_context and
# entra_require_recent_signin, naming the directive, file and line.
use Test::Nginx::Socket 'no_plan';
use EntraTest;
use File::Path qw(make_path);

my $dir = ($ENV{TEST_NGINX_SERVROOT} || 't/servroot') . '-step-up-files';
make_path($dir);
$dir = File::Spec->rel2abs($dir);
$ENV{TEST_NGINX_STEP_UP_FILES} = $dir;
for (['secret', "s3cret\n"], ['session.keys', "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\n"]) {
    open my $out, '>', "$dir/$_->[0]" or die $!;
    print $out $_->[1];
    close $out;
    chmod 0600, "$dir/$_->[0]";
}

log_level('info');
use_live_defaults();
run_tests();

__DATA__

=== TEST 1: ids c1 to c99, any case, at every level
--- http_config eval
live_provider()
--- config
    entra_require_auth_context C7;
    location /api { entra_auth live; entra_require_auth_context c1 c99; proxy_pass http://backend; }
--- error_code: 401
--- no_error_log
[emerg]

=== TEST 2: an id out of range is refused
--- http_config eval
live_provider()
--- config
    location /api { entra_auth live; entra_require_auth_context c1 c100; }
--- must_die
--- error_log eval
qr/\[emerg\] .*invalid "entra_require_auth_context" "c100": an authentication context id is c1 to c99 in \S+nginx\.conf:\d+/

=== TEST 3: so is anything that is no id
--- http_config eval
live_provider()
--- config
    location /api { entra_auth live; entra_require_auth_context mfa; }
--- must_die
--- error_log eval
qr/\[emerg\] .*invalid "entra_require_auth_context" "mfa": an authentication context id is c1 to c99 in \S+nginx\.conf:\d+/

=== TEST 4: and c0, or a leading zero
--- http_config eval
live_provider()
--- config
    location /api { entra_auth live; entra_require_auth_context c01; }
--- must_die
--- error_log eval
qr/\[emerg\] .*invalid "entra_require_auth_context" "c01"/

=== TEST 5: "off" stands alone at its level
--- http_config eval
live_provider()
--- config
    location /api { entra_auth live; entra_require_auth_context off; entra_require_auth_context c1; }
--- must_die
--- error_log eval
qr/\[emerg\] .*"entra_require_auth_context" cannot be both "off" and a requirement at one level in \S+nginx\.conf:\d+/

=== TEST 6: a recent sign-in on a bearer-only location is refused
--- http_config eval
live_provider()
--- config
    location /api { entra_auth live; entra_require_recent_signin 5m; }
--- must_die
--- error_log eval
qr/\[emerg\] .*"entra_require_recent_signin" in \S+nginx\.conf:\d+ applies to browser sessions: a bearer-only location \(entra_auth without session or any\) can never satisfy it/

=== TEST 7: inherited there, it is warned about; on a session location it is accepted
--- http_config eval
live_provider('client_secret_file $TEST_NGINX_STEP_UP_FILES/secret;', 'session_key_file $TEST_NGINX_STEP_UP_FILES/session.keys;')
--- config
    entra_require_recent_signin 15m;
    location /admin { entra_auth live session; }
    location /api { entra_auth live; }
--- request
GET /api
--- error_code: 401
--- error_log eval
qr/\[warn\] .*"entra_require_recent_signin" in \S+nginx\.conf:\d+ applies to browser sessions: a bearer-only location \(entra_auth without session or any\) can never satisfy it; it is inherited by one/
--- no_error_log
[emerg]

=== TEST 8: a time of at least a second
--- http_config eval
live_provider('client_secret_file $TEST_NGINX_STEP_UP_FILES/secret;', 'session_key_file $TEST_NGINX_STEP_UP_FILES/session.keys;')
--- config
    location /admin { entra_auth live session; entra_require_recent_signin 0s; }
--- must_die
--- error_log eval
qr/\[emerg\] .*"entra_require_recent_signin" value "0s" must be at least 1s in \S+nginx\.conf:\d+/

=== TEST 9: written twice at one level
--- http_config eval
live_provider('client_secret_file $TEST_NGINX_STEP_UP_FILES/secret;', 'session_key_file $TEST_NGINX_STEP_UP_FILES/session.keys;')
--- config
    location /admin { entra_auth live session; entra_require_recent_signin 5m; entra_require_recent_signin 1h; }
--- must_die
--- error_log eval
qr/\[emerg\] .*"entra_require_recent_signin" directive is duplicate in \S+nginx\.conf:\d+/
