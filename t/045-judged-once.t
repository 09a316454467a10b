# A token is judged once per request and provider, even across internal redirects. Observed
# through the module's debug log, so this needs an nginx built --with-debug (Debian's is). As
# upstream Test::Nginx does, the log checks of a block with several requests run after each
# request, on that request's lines, against one expected output.
use Test::Nginx::Socket;
use EntraTest;

my $configure = `$ENV{TEST_NGINX_BINARY} -V 2>&1`;
plan skip_all => 'nginx was built without --with-debug' unless $configure =~ /--with-debug/;
plan 'no_plan';

log_level('debug');
use_defaults();
run_tests();

__DATA__

=== TEST 1: try_files into a named location guarded by the same provider: judged once
--- config
    location /api {
        entra_auth dev;
        try_files /nonexistent @backend;
    }
    location @backend {
        entra_auth dev;
        entra_require_scope access_as_user;
        proxy_pass http://backend;
    }
--- more_headers eval: bearer()
--- error_code: 200
--- grep_error_log: entra: judging the token
--- grep_error_log_out
entra: judging the token

=== TEST 2: a denied token redirected to an error page under the same provider: judged once
--- config
    location /api {
        entra_auth dev;
        entra_require_group staff;
        error_page 403 /denied;
        proxy_pass http://backend;
    }
    location = /denied {
        entra_auth dev;
        proxy_pass http://backend;
    }
--- more_headers eval: bearer()
--- error_code: 403
--- response_body
backend /denied oid=
--- grep_error_log: entra: judging the token
--- grep_error_log_out
entra: judging the token

=== TEST 3: another provider judges the token again
--- http_config eval: provider('other')
--- config
    location /api {
        entra_auth dev;
        try_files /nonexistent @backend;
    }
    location @backend {
        entra_auth other;
        proxy_pass http://backend;
    }
--- more_headers eval: bearer()
--- error_code: 200
--- grep_error_log eval: qr/entra: judging the token with provider "\w+"/
--- grep_error_log_out
entra: judging the token with provider "dev"
entra: judging the token with provider "other"

=== TEST 4: the same token on a later request comes from the verified-token cache
--- config
    location /api { entra_auth dev; proxy_pass http://backend; }
    location = /status { entra_status; }
--- request eval: ['GET /api', 'GET /api', 'GET /status']
--- more_headers eval: my $t = bearer(); [$t, $t, '']
--- error_code eval: [200, 200, 200]
--- response_body_like eval: [qr/^backend/, qr/^backend/, qr/"cache_hits":1,"cache_misses":1,/]

=== TEST 5: token_cache off verifies every time
--- http_config eval: provider('token_cache off;')
--- request eval: ['GET /api', 'GET /api']
--- more_headers eval: my $t = bearer(); [$t, $t]
--- error_code eval: [200, 200]
--- grep_error_log eval: qr/entra: judging the token with provider "dev": .*/
--- grep_error_log_out
entra: judging the token with provider "dev": valid (checked)

=== TEST 6: a refused token is judged again each time, never cached
--- request eval: ['GET /api', 'GET /api']
--- more_headers eval: my $t = bearer('--aud', 'api://other'); [$t, $t]
--- error_code eval: [401, 401]
--- grep_error_log eval: qr/entra: judging the token with provider "dev": .*/
--- grep_error_log_out
entra: judging the token with provider "dev": wrong_audience (checked)

=== TEST 7: satisfy all: an address that deny refuses costs no judgment
--- config
    location /api {
        deny all;
        entra_auth dev;
        proxy_pass http://backend;
    }
--- more_headers eval: bearer()
--- error_code: 403
--- no_error_log
entra: judging the token

=== TEST 8: a forgery that keeps a cached token's first 200 bytes and last 64 characters is judged, never served from the cache
--- request eval: ['GET /api', 'GET /api']
--- more_headers eval
my $t = token();
my $middle = 200 + int((length($t) - 264) / 2);
my $f = $t;
substr($f, $middle, 1) = substr($t, $middle, 1) eq 'A' ? 'B' : 'A';
["Authorization: Bearer $t", "Authorization: Bearer $f"]
--- error_code eval: [200, 401]
--- grep_error_log eval: qr/entra: judging the token with provider "dev": \S+ \K\((?:checked|cached)\)/
--- grep_error_log_out
(checked)
