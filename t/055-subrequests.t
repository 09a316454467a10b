# Subrequests into an entra_auth location are judged too: nginx runs no access phase for them,
# so auth_request, SSI `include virtual`, mirror and slice would otherwise get around the
# location's requirements. The main request's outcome is reused when the same provider judged
# it; a subrequest never redirects to sign in.
use Test::Nginx::Socket 'no_plan';
use EntraTest;

log_level('info');
use_defaults();
run_tests();

__DATA__

=== TEST 1: auth_request to an entra_auth location: no token, no entry (even with return 204 there)
--- config
    location /app {
        auth_request /auth;
        proxy_pass http://backend;
    }
    location = /auth {
        internal;
        entra_auth dev;
        return 204;
    }
--- request eval: ['GET /app', 'GET /app', 'GET /app']
--- more_headers eval: ['', bearer(), bearer('--aud', 'api://other')]
--- error_code eval: [401, 200, 401]
--- response_headers eval
['WWW-Authenticate: Bearer realm="dev"', undef, 'WWW-Authenticate: Bearer realm="dev", error="invalid_token", error_description="wrong_audience"']

=== TEST 2: auth_request: the auth location's requirements hold, and its identity reaches the main request's variables
--- config
    location /app {
        auth_request /auth;
        proxy_set_header X-Oid $entra_oid;
        proxy_pass http://backend;
    }
    location = /auth {
        internal;
        entra_auth dev;
        entra_require_group 5c2a9d0b-7e2f-4d43-8c5a-1b2e3f4a5b77;
        return 204;
    }
--- request eval: ['GET /app', 'GET /app']
--- more_headers eval: [bearer('--groups', '5c2a9d0b-7e2f-4d43-8c5a-1b2e3f4a5b77', '--user', 'alice'), bearer('--groups', 'staff')]
--- error_code eval: [200, 403]
--- response_body_like eval
[qr/^backend \/app oid=[0-9a-f-]{36}$/, qr/403 Forbidden/]

=== TEST 3: SSI include virtual into a stricter location: the included part is refused
--- user_files
>>> page.html
before <!--# include virtual="/secret/part" --> after
--- config
    location = /page.html {
        ssi on;
        entra_auth dev;
    }
    location /secret/ {
        entra_auth dev;
        entra_require_group 0b7e2c5d-4a19-4f3e-8d62-1c9a7f5e3b08;
        return 200 "the secret part";
    }
--- request eval: ['GET /page.html', 'GET /page.html']
--- more_headers eval: [bearer(), bearer('--groups', '0b7e2c5d-4a19-4f3e-8d62-1c9a7f5e3b08')]
--- error_code eval: [200, 200]
--- response_body_like eval
[qr/^before (?:(?!the secret part).)*403 Forbidden(?:(?!the secret part).)* after$/s, qr/^before the secret part after$/]

=== TEST 4: mirror into a stricter location: the mirrored request is refused, the main one answered
--- config
    location /api {
        entra_auth dev;
        mirror /mirror;
        proxy_pass http://backend;
    }
    location = /mirror {
        internal;
        entra_auth dev;
        entra_require_role Mirror.Read;
        proxy_pass http://backend/mirrored;
    }
--- more_headers eval: bearer()
--- error_code: 200
--- response_body
backend /api oid=
--- error_log eval
qr/\[info\] .*entra: access denied: missing_role \(provider "dev", oid [0-9a-f-]{36}/

=== TEST 5: slice: every range subrequest of a guarded location passes with the main request's token
--- user_files
>>> data.txt
0123456789abcdefghij
--- http_config
    server {
        listen 127.0.0.1:$TEST_NGINX_BACKEND_PORT;
        entra_auth off;
        location / { root html; }
    }
    upstream backend { server 127.0.0.1:$TEST_NGINX_BACKEND_PORT; }
--- config
    location /big {
        entra_auth dev;
        slice 4;
        proxy_set_header Range $slice_range;
        proxy_http_version 1.1;
        proxy_pass http://backend/data.txt;
    }
--- request eval: ['GET /big', 'GET /big']
--- more_headers eval: [bearer(), '']
--- error_code eval: [200, 401]
--- response_body_like eval
[qr/^0123456789abcdefghij\n$/, qr/401 Authorization Required/]
--- no_error_log
[error]

