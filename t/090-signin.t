# Browser sign-in against the live development IdP: the redirect and its parameters, requests
# that get a 401 instead, the callback (answered even where `location / { return 404; }` would
# shadow it), the code exchange, the ID token's checks, the session cookie, `any` mode,
# cross-origin requests and logout, with a browser played by hand (t/lib/EntraBrowser.pm).
use strict;
use warnings;

use IO::Socket::INET;
use Test::More;
use EntraTest;
use EntraBrowser;

my $port = ($ENV{TEST_NGINX_PORT} || 1984) + 50;
my $prefix = ($ENV{TEST_NGINX_SERVROOT} || 't/servroot') . '-signin';
my $origin = "http://127.0.0.1:$port";
my $ALICE_GROUP = '0b9f3f6e-4a4c-4c1e-9a63-2f1d8f1b57e1';

signin_prefix($prefix);
browser_origin($origin);
my $provider = live_provider('client_secret_file secret;', 'session_key_file session.keys;',
    "post_logout_redirect $origin/bye;")
    # Behind a TLS-terminating load balancer that serves several host names.
    . live_provider('client_secret_file secret;', 'session_key_file session.keys;',
        'redirect_uri https://$host/lb/callback;', 'frontchannel_logout_uri /lb/logout;', 'session_cookie __Host-lb;')
        =~ s/entra_provider live/entra_provider lb/r;
# A twin: the same session key file and default cookie name, on a server of another host name.
$provider .= (live_provider('client_secret_file secret;', 'session_key_file session.keys;') =~ s/entra_provider live/entra_provider twin/r)
    . <<"TWIN";
    server {
        listen 127.0.0.1:$port;
        server_name twin.example;
        location /twin { entra_auth twin session; proxy_pass http://127.0.0.1:$port/who; }
    }
TWIN
my $h2_port = $port + 1;
my $debug = `$ENV{TEST_NGINX_BINARY} -V 2>&1` =~ /--with-debug/;
write_nginx_conf($prefix, $port, $provider, level => $debug ? 'debug' : 'info', listen => 'default_server',
    server => <<"LOCATIONS");
        listen 127.0.0.1:$h2_port http2;
        location / { return 404; }
        location /app {
            entra_auth live session;
            entra_require_group $ALICE_GROUP;
            proxy_set_header X-Who "\$entra_name (\$entra_auth_source) \$entra_groups";
            proxy_pass http://127.0.0.1:$port/who;
        }
        location /admin {
            entra_auth live session;
            entra_require_group 00000000-0000-0000-0000-00000000beef;
            proxy_pass http://127.0.0.1:$port/who;
        }
        location /guarded {
            entra_auth live session;
            entra_require_group 00000000-0000-0000-0000-00000000beef;
            error_page 403 /denied.html;
            proxy_pass http://127.0.0.1:$port/who;
        }
        location = /denied.html { internal; default_type text/plain; return 200 "the operator's own page\\n"; }
        location /mixed {
            entra_auth live any;
            proxy_set_header X-Who "\$entra_oid (\$entra_auth_source)";
            proxy_pass http://127.0.0.1:$port/who;
        }
        location = /logout { entra_auth live session; entra_logout; }
        location = /whoami { entra_auth live session; entra_whoami; }
        location /signout { entra_auth live session; entra_logout; }
        location /lb/ {
            entra_auth lb session;
            proxy_set_header X-Who "\$entra_name (\$entra_auth_source)";
            proxy_pass http://127.0.0.1:$port/who;
        }
        location /who { return 200 "who=\$http_x_who\\n"; }
        location = /status { entra_status; }
        location /via-auth { auth_request /app/check; proxy_pass http://127.0.0.1:$port/who; }
        location /both {
            auth_request /app/check;
            entra_auth live session;
            proxy_pass http://127.0.0.1:$port/who;
        }
        location /evil.example { entra_auth live session; proxy_pass http://127.0.0.1:$port/who; }
        location /to-bearer { entra_auth live session; try_files /no-such-file \@bearer; }
        location \@bearer { entra_auth live; rewrite ^ /who break; proxy_pass http://127.0.0.1:$port; }
LOCATIONS
my $pid = run_nginx($prefix, $port);


# --- The redirect and its parameters.
my $start = navigate('/app/page?x=1');
is($start->{status}, 302, 'a navigation without a session is sent to sign in');
my $location = $start->{headers}{location};
like($location, qr{^\Q$ENV{TEST_NGINX_IDP_URL}\E/$TENANT/oauth2/v2\.0/authorize\?}, 'to the authorize endpoint from the metadata');
my %q = query_of($location);
is($q{response_type}, 'code', 'response_type=code');
is($q{client_id}, $CLIENT_ID, 'client_id');
is($q{redirect_uri}, "http%3A%2F%2F127.0.0.1%3A$port%2F.entra%2Fcallback", 'the redirect URI, from the scheme and the Host header');
is($q{scope}, 'openid%20profile%20email', 'the default scopes');
is($q{code_challenge_method}, 'S256', 'PKCE S256');
like($q{code_challenge}, qr/^[A-Za-z0-9_-]{43}$/, 'a code challenge');
like($q{state}, qr/^[A-Za-z0-9_-]{32}$/, 'a state');
like($q{nonce}, qr/^[A-Za-z0-9_-]{32}$/, 'a nonce');
is($q{response_mode}, 'query', 'response_mode=query');
my ($transaction) = set_cookies($start);
like($transaction, qr/^entra-t0=[A-Za-z0-9_-]+; Path=\/; HttpOnly; SameSite=Lax; Max-Age=600$/,
    'a transaction cookie, HttpOnly and Lax, not Secure on plain HTTP');
is($start->{headers}{'cache-control'}, 'no-store', 'the redirect is not cached');
is(request('HEAD', '/app', undef, %NAVIGATION)->{status}, 302, 'a HEAD navigation is sent to sign in too');

# --- Anything that is not a navigation gets a 401 it can handle.
for my $case (
    ['XHR', %NAVIGATION, 'X-Requested-With' => 'XMLHttpRequest'],
    ['fetch() for JSON', Accept => 'application/json', 'Sec-Fetch-Mode' => 'cors', 'Sec-Fetch-Dest' => 'empty'],
    ['Accept: */*', Accept => '*/*'],
    ['a prefetch', %NAVIGATION, 'Sec-Purpose' => 'prefetch'],
    ['an iframe', %NAVIGATION, 'Sec-Fetch-Dest' => 'iframe'],
) {
    my ($name, %h) = @$case;
    my $res = request('GET', '/app', undef, %h);
    is($res->{status}, 401, "$name gets 401");
    is($res->{headers}{'www-authenticate'}, 'Bearer realm="live"', "$name: a bare challenge");
    is(scalar(set_cookies($res)), 0, "$name: no transaction cookie");
}
is(request('POST', '/app', undef, %NAVIGATION)->{status}, 401, 'a POST gets 401');

# --- The round trip.
idp_admin('approve?user=alice');
my ($callback, $jar, $callback_url) = sign_in('/app/page?x=1');
is($callback->{status}, 302, 'the callback answers with a redirect');
is($callback->{headers}{location}, "$origin/app/page?x=1", 'back to the URL first asked for, absolute');
ok($jar->{entra}, 'a session cookie is set');
ok(!exists $jar->{'entra-t0'}, 'the transaction cookie is cleared');
my ($session_line) = grep { /^entra=/ } set_cookies($callback);
like($session_line, qr/; Path=\/; HttpOnly; SameSite=Lax$/, 'the session cookie is HttpOnly and Lax, for the browser session');
my $page = navigate('/app/page?x=1', $jar);
is($page->{status}, 200, 'the session lets the navigation in');
is($page->{content}, "who=Alice Example (session) $ALICE_GROUP,5a1e0f3c-7b2d-4e6a-8c9f-1d3b5e7a9c20\n",
    'with the user, the source and the groups in variables');
is(request('GET', '/app', $jar, Accept => 'application/json')->{status}, 200, 'and a script of the page');
my $whoami = request('GET', '/whoami', $jar, Accept => 'application/json');
like($whoami->{content}, qr/"groups":\["$ALICE_GROUP","5a1e0f3c-7b2d-4e6a-8c9f-1d3b5e7a9c20"\].*"provider":"live".*"source":"session".*"upn":"alice\@contoso\.example"/,
    'entra_whoami shows the session\'s identity');
unlike($whoami->{content}, qr/\Q$jar->{entra}\E/, 'never the cookie');
is(navigate('/via-auth', $jar)->{status}, 200, 'an auth_request subrequest into a session location passes with the session');
my $unsigned = navigate('/via-auth', {});
is($unsigned->{status}, 401, 'and without one gets a 401, never a redirect to sign in');
ok(!grep({ /^entra-t\d=/ } set_cookies($unsigned)), 'with no transaction cookie');
like(log_text(), qr/\[info\] .*entra: signed in: provider "live", oid [0-9a-f-]{36}, tid $TENANT, sid [0-9a-f-]{36}, 2 groups/,
    'one info line per sign-in');
# The module's own lines, at every level it writes (nginx's own debug lines show requests whole).
my $module_lines = join '', grep { /entra: / } split /^/m, log_text();
unlike($module_lines, qr/code=|\Q$jar->{entra}\E/, 'no code or cookie value in the module\'s log lines');

# The provider is bound into the seal: the twin's key and cookie name are the same, yet it sees no session.
my $twin = request('GET', "$origin/twin", $jar, Host => 'twin.example', Accept => 'application/json');
is($twin->{status}, 401, 'a session of another provider with the same keys and cookie name counts as none');
like(log_text(), qr/provider "twin": the session cookie counts as none/, 'logged as such');

my $admin = navigate('/admin', $jar);
is($admin->{status}, 403, 'a session without the required group is refused');
like(log_text(), qr/access denied: missing_group \(provider "live", oid [0-9a-f-]{36}, tid $TENANT\): groups \(object ids\) required, any of: "[0-9a-f-]{36}"; the session has: "[0-9a-f-]{36}" "[0-9a-f-]{36}", client/,
    'for missing_group, with the groups required and those the session has (and no key id: a session has none)');
like($admin->{content}, qr/signed in as <b>alice\@contoso\.example<\/b>/, 'the page names the signed-in user');
like($admin->{content}, qr/<code>missing_group<\/code>/, 'and the reason');
like($admin->{content}, qr/This page needs groups \(object ids\) required, any of: &quot;[0-9a-f-]{36}&quot;\./,
    'and what the page requires');
my ($other_account) = $admin->{content} =~ /<a href="([^"]+)">Sign in as someone else<\/a>/;
is($other_account, '/.entra/callback?select_account=%2Fadmin', 'with a link to sign in as someone else');
is(scalar(grep { /^entra-t\d=/ } set_cookies($admin)), 0, 'whose attempt starts only on a click');
my $clicked = navigate($other_account, $jar);
is($clicked->{status}, 302, 'clicked, it sends the browser to sign in');
like($clicked->{headers}{location}, qr/^\Q$ENV{TEST_NGINX_IDP_URL}\E\/$TENANT\/oauth2\/v2\.0\/authorize\?.*&prompt=select_account$/,
    'choosing an account');
ok((grep { /^entra-t\d=/ } set_cookies($clicked)), 'with its transaction cookie');
my $evil_jar = {};
my $evil = navigate('/.entra/callback?select_account=%2F%2Fevil.example', $evil_jar);
apply_cookies($evil_jar, $evil);
my $evil_done = navigate(request('GET', $evil->{headers}{location})->{headers}{location}, $evil_jar);
is($evil_done->{headers}{location}, "$origin/", 'a link naming another site\'s URL returns to this site\'s root');
like($admin->{content}, qr/<a href="[^"]+\/oauth2\/v2\.0\/logout">Sign out<\/a>/, 'and a link to sign out');
is($admin->{headers}{'cache-control'}, 'no-store', 'not cached');
is($admin->{headers}{'referrer-policy'}, 'no-referrer', 'the 403 page sends no Referer onwards');
is($admin->{headers}{'content-security-policy'}, "frame-ancestors 'none'", 'and is never framed');
is(request('GET', '/admin', $jar, Accept => 'application/json')->{status}, 403, 'a script gets the bare 403');
my $guarded = navigate('/guarded', $jar);
is($guarded->{status}, 403, 'with error_page 403, still a 403');
is($guarded->{content}, "the operator's own page\n", 'and the operator\'s page');

# --- The callback is strict.
my $replay = navigate($callback_url, { %$jar, 'entra-t0' => (split /[=;]/, $transaction)[1] });
is($replay->{status}, 401, 'a callback whose transaction is not this attempt\'s is refused');
my (undef, undef, $used) = sign_in('/app', jar => {});
my $jar2 = {};
my $again = navigate('/app', $jar2);
apply_cookies($jar2, $again);
my $reuse = navigate($used, $jar2);
is($reuse->{status}, 401, 'a code of another attempt is refused');
is($reuse->{headers}{location}, undef, 'with a page, not a redirect');
like($reuse->{content}, qr/state_mismatch/, 'the page names the reason');
is($reuse->{headers}{'referrer-policy'}, 'no-referrer', 'the failure page, whose URL holds the code, sends no Referer');
is($reuse->{headers}{'content-security-policy'}, "frame-ancestors 'none'", 'and is never framed');
my ($state) = $used =~ /state=([^&]+)/;

my $fresh = {};
my $s = navigate('/app', $fresh);
apply_cookies($fresh, $s);
my %sq = query_of($s->{headers}{location});
my $code_url = request('GET', $s->{headers}{location})->{headers}{location};
is(navigate($code_url, {})->{status}, 401, 'a callback without a transaction cookie is refused (login CSRF)');
is(navigate("$code_url&state=$sq{state}", $fresh)->{status}, 401, 'a callback with state twice is refused');
{
    # A sibling subdomain planting a second cookie of the attempt's name: neither is used, both go.
    my $line = "entra-t0=$fresh->{'entra-t0'}; entra-t0=planted";
    my $planted = request('GET', $code_url, undef, %NAVIGATION, Cookie => $line);
    is($planted->{status}, 401, 'a transaction cookie sent twice is used by nobody');
    ok((grep { /^entra-t0=; .*Max-Age=0/ } set_cookies($planted)), 'and is cleared');
}
my $ok = navigate($code_url, $fresh);
is($ok->{status}, 302, 'the genuine callback still signs in');
my $replayed = navigate($code_url, $fresh);
is($replayed->{status}, 401, 'a replayed callback is refused');
like(log_text(), qr/sign-in failed: state_mismatch \(provider "live"\): the sign-in attempt's state was used already/,
    'before the token endpoint: its state was used once');
my $replays = 0;
$replays += navigate("$code_url&again=$_", $fresh)->{status} == 401 for 1 .. 5;
is($replays, 5, 'however often it comes back');
like(request('GET', '/status')->{content}, qr/"replayed_states":6\b/, 'entra_status counts the replays');

# --- Errors from Entra.
idp_admin('break?authorize=access_denied');
my (undef, undef) = ();
my $denied_jar = {};
my $d = navigate('/app', $denied_jar);
apply_cookies($denied_jar, $d);
my $back = request('GET', $d->{headers}{location})->{headers}{location};
like($back, qr/error=access_denied/, 'the IdP answers with an error');
my $denied = navigate($back, $denied_jar);
is($denied->{status}, 403, 'access_denied from Entra is a 403');
like($denied->{content}, qr/<code>access_denied<\/code>/, 'naming the error code');
unlike($denied->{content}, qr/<b>/, 'never the raw description');
apply_cookies($denied_jar, $denied);
ok(!exists $denied_jar->{'entra-t0'}, 'and the attempt\'s cookie is cleared');
idp_admin('break?authorize=temporarily_unavailable');
my ($err) = sign_in('/app');
is($err->{status}, 401, 'another error from Entra is a 401 idp_error');

# --- The ID token's checks.
for my $case (
    [nonce => qr/nonce_mismatch/],
    [no_nonce => qr/nonce_mismatch/],
    [audience => qr/wrong_audience/],
    [issuer => qr/wrong_issuer/],
    [expired => qr/expired/],
    [unsigned => qr/alg_not_allowed/],
) {
    my ($break, $reason) = @$case;
    idp_admin("break?id_token=$break");
    my ($res) = sign_in('/app');
    is($res->{status}, 401, "an ID token broken by $break is refused");
    like($res->{content}, $reason, "with $reason");
}

# --- Sessions that do not open count as none.
my $good = $jar->{entra};
(my $tampered = $good) =~ s/^(.{20})(.)/$1 . ($2 eq 'A' ? 'B' : 'A')/e;
my $t = navigate('/app', { entra => $tampered });
is($t->{status}, 302, 'a tampered session sends a navigation to sign in');
ok((grep { /^entra=; .*Max-Age=0/ } set_cookies($t)), 'and clears the cookie that did not open');
is(request('GET', '/app', { entra => substr($good, 0, 40) }, Accept => 'application/json')->{status}, 401,
    'a truncated session gets a script 401');
like(log_text(), qr/the session cookie counts as none: altered, or sealed for another use/, 'logged with the reason');
is(request('GET', '/app', {}, Accept => 'application/json', Cookie => "entra=$good; entra=$good")->{status}, 401,
    'a session cookie sent twice is used by nobody');

# --- Two Cookie lines (HTTP/1.1): the session is found in the second.
{
    my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port, Proto => 'tcp') or die $!;
    print $sock "GET /app HTTP/1.1\r\nHost: 127.0.0.1:$port\r\nAccept: application/json\r\nCookie: a=b\r\nCookie: entra=$good\r\nConnection: close\r\n\r\n";
    like(read_answer($sock, 10), qr{^HTTP/1\.1 200}, 'a session in the second of two Cookie lines is read');
}

# --- HTTP/2 sends cookies as crumbs, one header field each: the session is found among them.
{
    my $cookies = join ' ', map { "-H 'Cookie: $_'" } 'a=b', "entra=$good", 'c=d';
    my $status = `curl -s -o /dev/null -w '%{http_code}' --http2-prior-knowledge -H 'Accept: application/json' $cookies http://127.0.0.1:$h2_port/app`;
    is($status, '200', 'a session among HTTP/2 cookie crumbs is read');
}

# --- `any`: a bearer token when Authorization is sent, else the session.
like(request('GET', '/mixed', undef, Authorization => 'Bearer ' . live_idp('mint'))->{content}, qr/\(bearer\)/, 'any: a bearer token');
like(request('GET', '/mixed', $jar, Accept => 'application/json')->{content}, qr/\(session\)/, 'any: the session');
is(request('GET', '/mixed', $jar, Authorization => 'Bearer nonsense')->{status}, 401, 'any: a bad bearer token is not rescued by the session');

# --- Requests from another site do not get to use the session.
is(request('POST', '/mixed', $jar, Origin => 'http://evil.example')->{status}, 403, 'a cross-origin POST is refused');
is(request('POST', '/mixed', $jar, 'Sec-Fetch-Site' => 'same-site')->{status}, 403, 'a POST from a sibling site too');
is(request('POST', '/mixed', $jar, Origin => $origin, 'Sec-Fetch-Site' => 'same-origin')->{status}, 200, 'a same-origin POST is let in');
is(request('GET', '/mixed', $jar, Upgrade => 'websocket', Connection => 'Upgrade', Origin => 'http://evil.example')->{status},
    403, 'a cross-origin WebSocket upgrade is refused');
is(request('GET', '/mixed', $jar, Origin => 'http://evil.example')->{status}, 200, 'a cross-origin GET is not');
is(request('POST', '/mixed', undef, Origin => 'http://evil.example', Authorization => 'Bearer ' . live_idp('mint'))->{status}, 200,
    'bearer requests are not checked for their origin');
like(log_text(), qr/access denied: cross_origin/, 'refused with cross_origin');
# nginx gives an auth_request subrequest the method GET: the session is judged with the main request's.
is(request('POST', '/via-auth', $jar, Origin => 'http://evil.example')->{status}, 403,
    'a cross-origin POST through auth_request is refused');
is(request('POST', '/both', $jar, Origin => 'http://evil.example')->{status}, 403,
    'and where auth_request and entra_auth guard one location, the main request does not reuse a GET\'s verdict');
is(request('POST', '/both', $jar, Origin => $origin)->{status}, 200, 'a same-origin POST there passes');
# An outcome reused after an internal redirect must be one the location accepts.
is(request('GET', '/to-bearer', $jar, Accept => 'application/json')->{status}, 401,
    'a session does not satisfy a bearer-only location reached by try_files');
is(request('GET', '/to-bearer', $jar, Accept => 'application/json',
    Authorization => 'Bearer ' . live_idp('mint'))->{status}, 200, 'a bearer token there does');

# --- Logout.
my $ask = navigate('/logout', $jar, 'Sec-Fetch-Site' => 'cross-site');
is($ask->{status}, 200, 'a GET from elsewhere gets a page');
like($ask->{content}, qr{<form method="post" action="/logout">}, 'with a button that posts the logout');
is(scalar(set_cookies($ask)), 0, 'and logs nobody out');
is($ask->{headers}{'content-security-policy'}, "frame-ancestors 'none'", 'the page is never framed (no clickjacking)');
my $offsite = navigate('//signout.evil.example', $jar, 'Sec-Fetch-Site' => 'cross-site');
is($offsite->{status}, 200, 'a prefix logout location answers //signout.evil.example with its page');
like($offsite->{content}, qr{<form method="post" action="(/signout\.evil\.example)?">}, 'whose button posts to this site');
is(request('POST', '/logout', $jar, 'Sec-Fetch-Site' => 'cross-site')->{status}, 403, 'a cross-site POST is refused');
my %copied = %$jar;
is(request('GET', '/app', \%copied, Accept => 'application/json')->{status}, 200, 'a copy of the session cookie works');
my $out = request('POST', '/logout', $jar, Origin => $origin);
is($out->{status}, 302, 'a same-origin POST logs out');
is(request('GET', '/app', \%copied, Accept => 'application/json')->{status}, 401,
    'and the copy no longer opens: the session ended in the record too');
like($out->{headers}{location}, qr{^\Q$ENV{TEST_NGINX_IDP_URL}\E/$TENANT/oauth2/v2\.0/logout\?post_logout_redirect_uri=http%3A%2F%2F127\.0\.0\.1%3A$port%2Fbye&logout_hint=\S+},
    'to the end-session endpoint with the post-logout redirect and the login hint');
ok((grep { /^entra=; .*Max-Age=0/ } set_cookies($out)), 'clearing the session cookie');
my $same = navigate('/logout', $jar, 'Sec-Fetch-Site' => 'same-origin');
is($same->{status}, 302, 'a GET shown to be same-origin logs out too');
is(request('POST', '/logout', {}, Origin => $origin)->{status}, 302, 'logout answers without a session');

# --- A redirect URI with $host, for a load balancer that ends TLS: HTTPS cookies over plain HTTP.
idp_admin('approve?user=alice');
my $lb = navigate('/lb/page?x=1', undef, Host => 'App.Example:8443');
is($lb->{status}, 302, 'behind the load balancer: sent to sign in');
is({ query_of($lb->{headers}{location}) }->{redirect_uri}, 'https%3A%2F%2Fapp.example%2Flb%2Fcallback',
    'the redirect URI names the request\'s host ($host: lowercase, no port), with https');
my ($lb_transaction) = set_cookies($lb);
like($lb_transaction, qr/^__Host-lb-t0=[^;]+; Path=\/; HttpOnly; SameSite=Lax; Secure; Max-Age=600$/,
    'the transaction cookie is Secure, with the __Host- prefix');
my $lb_jar = {};
apply_cookies($lb_jar, $lb);
my $lb_back = request('GET', $lb->{headers}{location})->{headers}{location};
like($lb_back, qr{^https://app\.example/lb/callback\?code=}, 'Entra sends the browser to the https URL');
(my $lb_local = $lb_back) =~ s{^https://app\.example}{$origin};
my $lb_callback = navigate($lb_local, $lb_jar, Host => 'app.example');
is($lb_callback->{status}, 302, 'the callback signs in');
is($lb_callback->{headers}{location}, 'https://app.example/lb/page?x=1', 'and goes back with the redirect URI\'s scheme and host');
my ($lb_session) = grep { /^__Host-lb=/ } set_cookies($lb_callback);
like($lb_session, qr/; Path=\/; HttpOnly; SameSite=Lax; Secure$/, 'a Secure __Host- session cookie');
apply_cookies($lb_jar, $lb_callback);
like(navigate('/lb/page', $lb_jar, Host => 'app.example')->{content}, qr/who=Alice Example \(session\)/,
    'the session works behind the load balancer');
is(request('GET', '/app', { entra => $lb_jar->{'__Host-lb'} }, Accept => 'application/json')->{status}, 401,
    'a session of another provider, under this one\'s cookie name, does not open');

# --- A sign-in started at a path that reads as another site's URL ends on this site's own path.
idp_admin('approve?user=alice');
for my $start ('//evil.example/app', '/%2F%2Fevil.example') {
    my ($callback) = sign_in($start);
    is($callback->{status}, 302, "a sign-in started at $start completes");
    like($callback->{headers}{location}, qr{^\Q$origin\E/(?![/\\]|%2F|%5C)}i, 'and goes back to a path of this site');
}

# --- Five tabs signing in at once: never more than four transaction cookies, none loops.
my $tabs = {};
my @redirects;
for my $tab (1 .. 5) {
    my $r = navigate("/app/tab$tab", $tabs);
    apply_cookies($tabs, $r);
    push @redirects, $r->{headers}{location};
}
is(scalar(grep { /^entra-t\d$/ } keys %$tabs), 4, 'four transaction cookies at most');
my @signed = map {
    my $code_url = request('GET', $_)->{headers}{location};
    navigate($code_url, { %$tabs })->{status};
} @redirects[1 .. 4];
is_deeply(\@signed, [302, 302, 302, 302], 'the four latest tabs each sign in');

unlike(log_text(), qr/\[(alert|crit|emerg)\]/, 'no alert, crit or emerg line in the error log');
SKIP: {
    skip 'nginx was built without --with-debug', 2 unless $debug;
    my @tasks = log_text() =~ /entra: \w[\w ]* posted to thread pool "\w+" \((\d+) tasks in this worker\)/g;
    ok(@tasks > 10, scalar(@tasks) . ' jobs posted to thread pools');
    # One task per provider fetching (three here) at most: a task whose job is done serves the next.
    ok($tasks[-1] <= 3, "on $tasks[-1] thread tasks: a task whose job is done serves the next");
}

done_testing();
