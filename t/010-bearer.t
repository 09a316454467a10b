# Responses to a protected location: who gets in, and what the others are told.
use Test::Nginx::Socket 'no_plan';
use EntraTest;

log_level('info');
use_defaults();
run_tests();

__DATA__

=== TEST 1: a valid token reaches the backend
--- more_headers eval: bearer()
--- error_code: 200
--- response_body
backend /api oid=
--- no_error_log
entra: access denied

=== TEST 2: no token: a bare challenge (RFC 6750 section 3)
--- error_code: 401
--- response_headers
WWW-Authenticate: Bearer realm="dev"
--- error_log
entra: access denied: no_token (provider "dev")

=== TEST 3: another scheme is no token
--- more_headers
Authorization: Basic dXNlcjpwYXNz
--- error_code: 401
--- response_headers
WWW-Authenticate: Bearer realm="dev"
