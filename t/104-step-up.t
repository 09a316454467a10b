# Step-up per location: entra_require_auth_context (Conditional Access authentication contexts in
# acrs) for bearer tokens, which get Entra's claims challenge, and for browser sessions, which are
# sent to sign in again asking for the context; entra_require_recent_signin (the ID token's
# auth_time) for sessions. Never a loop: a step-up Entra does not grant ends on a 403 page.
use strict;
use warnings;

use Test::More;
use JSON::PP qw(decode_json);
use MIME::Base64 qw(decode_base64);
use Time::HiRes qw(time sleep);
use EntraTest;
use EntraBrowser;

my $port = ($ENV{TEST_NGINX_PORT} || 1984) + 210;
my $prefix = ($ENV{TEST_NGINX_SERVROOT} || 't/servroot') . '-step-up';
my $origin = "http://127.0.0.1:$port";

signin_prefix($prefix);
browser_origin($origin);
my $provider = live_provider('client_secret_file secret;', 'session_key_file session.keys;')
    . live_provider('client_secret_file secret;', 'session_key_file session.keys;', 'session_revalidate 1s;',
        'session_cookie reval;', 'redirect_uri /.entra/reval;', 'frontchannel_logout_uri /.entra/reval-logout;')
    =~ s/entra_provider live/entra_provider reval/r;
write_nginx_conf($prefix, $port, $provider, server => <<"LOCATIONS");
        location /api/ {
            entra_auth live;
            entra_require_auth_context c1 C2;
            proxy_pass http://127.0.0.1:$port/who;
            location /api/both/ {
                entra_require_auth_context c1 c2;
                entra_require_auth_context c3;
                proxy_pass http://127.0.0.1:$port/who;
            }
            location /api/open/ { entra_require_auth_context off; proxy_pass http://127.0.0.1:$port/who; }
            location /api/inherit/ { proxy_pass http://127.0.0.1:$port/who; }
        }
        location /app { entra_auth live session; proxy_pass http://127.0.0.1:$port/who; }
        location /admin/ {
            entra_auth live session;
            entra_require_auth_context c1;
            proxy_set_header X-Contexts \$entra_auth_contexts;
            proxy_set_header X-Signin \$entra_signin_time;
            proxy_pass http://127.0.0.1:$port/who;
        }
        location /admin2/ { entra_auth live any; entra_require_auth_context c1; proxy_pass http://127.0.0.1:$port/who; }
        location /admin3/ {
            entra_auth live session;
            entra_require_auth_context c2;
            proxy_set_header X-Contexts \$entra_auth_contexts;
            proxy_pass http://127.0.0.1:$port/who;
        }
        location /sudo/ {
            entra_auth live session;
            entra_require_recent_signin 60s;
            proxy_set_header X-Signin \$entra_signin_time;
            proxy_pass http://127.0.0.1:$port/who;
        }
        location /r/ { entra_auth reval session; entra_require_auth_context c1; proxy_pass http://127.0.0.1:$port/who; }
        location /who { return 200 "contexts=\$http_x_contexts signin=\$http_x_signin\\n"; }
        location /status { entra_status; }
LOCATIONS
my $pid = run_nginx($prefix, $port, 'approve?user=alice');

sub api { my ($path, @mint) = @_; request('GET', $path, undef, Authorization => 'Bearer ' . live_idp('mint', @mint)) }
sub script { my ($path, $jar) = @_; request('GET', $path, $jar, Accept => 'application/json') }

# A query value, percent-decoded.
sub unescape { my ($s) = @_; return undef unless defined $s; $s =~ s/\+/ /g; $s =~ s/%([0-9A-Fa-f]{2})/chr hex $1/ge; $s }

# The attributes of a WWW-Authenticate value, by name.
sub challenge_of {
    my ($value) = @_;
    return () unless defined $value;
    return ($value =~ /(\w+)="([^"]*)"/g);
}

# The claims a challenge asks for, decoded from standard base64.
sub claims_of { my %c = challenge_of(@_); defined $c{claims} ? decode_json(decode_base64($c{claims})) : undef }

my $wanted = sub { { access_token => { acrs => { essential => JSON::PP::true, value => $_[0] } } } };

# --- Bearer tokens.
my $none = api('/api/x');
is($none->{status}, 401, 'a token without the context gets 401, not 403: a new token can fix it');
my %c = challenge_of($none->{headers}{'www-authenticate'});
is($c{error}, 'insufficient_claims', 'Entra\'s claims challenge');
is($c{realm}, 'live', 'in the provider\'s realm');
is($c{authorization_uri}, "$ENV{TEST_NGINX_IDP_URL}/$TENANT/oauth2/v2.0/authorize", 'naming where to get one');
like($none->{headers}{'www-authenticate'}, qr/claims="[A-Za-z0-9+\/]+={0,2}"$/, 'standard base64 with padding');
is_deeply(claims_of($none->{headers}{'www-authenticate'}), $wanted->('c1'), 'asking for the first id of the line');
like(log_text(), qr/access denied: auth_context_missing/, 'logged with its reason');
is(api('/api/x', '--acrs', 'c2')->{status}, 200, 'any id of the line passes (C2 is written c2)');
is(api('/api/x', '--acrs', 'c9,c1')->{status}, 200, 'among others');
my $both = api('/api/both/x', '--acrs', 'c1');
is($both->{status}, 401, 'two lines: all of them');
is_deeply(claims_of($both->{headers}{'www-authenticate'}), $wanted->('c3'), 'the challenge names the line not satisfied');
is(api('/api/both/x', '--acrs', 'c2,c3')->{status}, 200, 'both lines satisfied');
is(api('/api/open/x')->{status}, 200, '"off" inherits nothing');
is(api('/api/inherit/x')->{status}, 401, 'a nested location inherits the requirement');
my $typed = api('/api/x', '--claim', 'acrs="c1"');
is($typed->{status}, 401, 'acrs of the wrong type');
like($typed->{headers}{'www-authenticate'}, qr/error="invalid_token", error_description="invalid_claim"/, 'is invalid_token');
my $app = api('/api/x', '--app', 'daemon');
is($app->{status}, 403, 'an app-only token can never carry a context: 403');
unlike($app->{headers}{'www-authenticate'} // '', qr/claims=/, 'without a claims challenge');

# --- Browser sessions: a navigation steps up, and comes back.
my (undef, $jar) = sign_in('/app');
is(navigate('/app', $jar)->{status}, 200, 'signed in');
my $step = navigate('/admin/page?x=1', $jar);
is($step->{status}, 302, 'a session without the context is sent to sign in again');
my %q = query_of($step->{headers}{location});
is_deeply(decode_json(unescape($q{claims})), { id_token => { acrs => { essential => JSON::PP::true, value => 'c1' } } },
    'asking for the context in the ID token');
ok($q{login_hint}, 'with login_hint: the user is not asked who they are');
is($q{prompt}, undef, 'no prompt');
apply_cookies($jar, $step);
my $granted = request('GET', $step->{headers}{location});
my $back = navigate($granted->{headers}{location}, $jar);
is($back->{status}, 302, 'the callback completes');
is($back->{headers}{location}, "$origin/admin/page?x=1", 'back where the user was');
apply_cookies($jar, $back);
my $page = navigate('/admin/page?x=1', $jar);
is($page->{status}, 200, 'the page is served');
like($page->{content}, qr/contexts=c1 signin=\d{10}/, '$entra_auth_contexts and $entra_signin_time');
is(navigate('/admin2/other', $jar)->{status}, 200, 'a second page with the same context does not step up again');
my $c2 = navigate('/admin3/', $jar);
is($c2->{status}, 302, 'a page with another context steps up for it');
apply_cookies($jar, $c2);
my $c2_back = navigate(request('GET', $c2->{headers}{location})->{headers}{location}, $jar);
apply_cookies($jar, $c2_back);
like(navigate('/admin3/', $jar)->{content}, qr/contexts=c2,c1 /, 'the session keeps the context it had');
is(navigate('/admin/page', $jar)->{status}, 200, 'so the first page needs no step-up again');

# Scripts get the claims challenge instead.
my (undef, $plain) = sign_in('/app');
my $xhr = script('/admin/data', $plain);
is($xhr->{status}, 401, 'a script without the context gets 401');
is_deeply(claims_of($xhr->{headers}{'www-authenticate'}), $wanted->('c1'), 'with the same claims challenge');
is($xhr->{headers}{location}, undef, 'and no redirect');

# --- Entra refusing the context ends on a page, never a loop.
for my $case (['access_denied', 'Entra refuses the context'], ['ignore', 'the ID token comes back without it']) {
    my ($answer, $what) = @$case;
    idp_admin("step_up?answer=$answer");
    my $nav = navigate('/admin/', $plain);
    is($nav->{status}, 302, "$what: the navigation steps up");
    my $jar2 = { %$plain };
    apply_cookies($jar2, $nav);
    my $refused = navigate(request('GET', $nav->{headers}{location})->{headers}{location}, $jar2);
    is($refused->{status}, 403, "$what: 403");
    is($refused->{headers}{location}, undef, "$what: no second redirect");
    like($refused->{content}, qr/auth_context_missing.*|c1/s, "$what: the page names the reason");
    like($refused->{content}, qr/<code>c1<\/code>/, "$what: and what was asked");
}
idp_admin('step_up?answer=pass');

# --- Recent sign-in: auth_time, never the time of the callback.
is(navigate('/sudo/', $plain)->{status}, 200, 'a fresh sign-in passes entra_require_recent_signin');
idp_admin('step_up?auth_age=3600');
my (undef, $old) = sign_in('/app');
my $sudo = navigate('/sudo/', $old);
is($sudo->{status}, 302, 'an hour-old authentication steps up');
my %sq = query_of($sudo->{headers}{location});
is($sq{prompt}, 'login', 'with prompt=login');
is($sq{max_age}, '60', 'and max_age');
ok($sq{login_hint}, 'and login_hint');
my $old_script = script('/sudo/', $old);
is($old_script->{status}, 401, 'a script gets 401');
like($old_script->{headers}{'www-authenticate'}, qr/error="insufficient_user_authentication", error_description="signin_too_old", max_age="60"/,
    'signin_too_old, with max_age');
my $still = { %$old };
apply_cookies($still, $sudo);
my $too_old = navigate(request('GET', $sudo->{headers}{location})->{headers}{location}, $still);
is($too_old->{status}, 403, 'Entra answering with an old auth_time again: 403');
like($too_old->{content}, qr/signin_too_old/, 'signin_too_old');
idp_admin('step_up?auth_age=0');
my $again = navigate('/sudo/', $old);
apply_cookies($old, $again);
my $fresh = navigate(request('GET', $again->{headers}{location})->{headers}{location}, $old);
is($fresh->{status}, 302, 'a fresh authentication completes');
apply_cookies($old, $fresh);
is(navigate('/sudo/', $old)->{status}, 200, 'and passes');

idp_admin('step_up?auth_time=omit');
my (undef, $unknown) = sign_in('/app');
my $never = navigate('/sudo/', $unknown);
is($never->{status}, 403, 'without auth_time the directive is never satisfied: 403');
like($never->{content}, qr/signin_too_old/, 'the page says why');
like(log_text(), qr/\[warn\] .*provider "live": a session has no auth_time/, 'warned, naming the provider');
idp_admin('step_up?auth_time=keep');

# --- Silent revalidation asks for the contexts the session holds.
my (undef, $rjar) = sign_in('/r/');
my $first = navigate('/r/', $rjar);
is($first->{status}, 302, 'the reval provider steps up');
apply_cookies($rjar, $first);
my $done = navigate(request('GET', $first->{headers}{location})->{headers}{location}, $rjar);
apply_cookies($rjar, $done);
is(navigate('/r/', $rjar)->{status}, 200, 'with c1');
my $since = time;
sleep 0.05 while time < $since + 1.1;
my $silent = navigate('/r/', $rjar);
my %rq = query_of($silent->{headers}{location});
is($rq{prompt}, 'none', 'a due navigation revalidates silently');
is_deeply(decode_json(unescape($rq{claims}) // '{}'), { id_token => { acrs => { essential => JSON::PP::true, value => 'c1' } } },
    'asking again for the context it holds');
apply_cookies($rjar, $silent);
idp_admin('step_up?answer=interaction_required');
my $idp = request('GET', $silent->{headers}{location}, undef, Cookie => 'idp_signin=alice');
like($idp->{headers}{location}, qr/error=interaction_required/, 'Entra wants the user for the context');
my $dropped = navigate($idp->{headers}{location}, $rjar);
is($dropped->{status}, 302, 'the session keeps its sign-in');
is($dropped->{headers}{location}, "$origin/r/", 'and goes back');
ok((grep { /^reval=/ && !/Max-Age=0/ } set_cookies($dropped)), 're-sealed without its contexts');
apply_cookies($rjar, $dropped);
idp_admin('step_up?answer=pass');
my $plain_silent = navigate('/r/', $rjar);
my %pq = query_of($plain_silent->{headers}{location});
is($pq{prompt}, 'none', 'the navigation revalidates again');
is($pq{claims}, undef, 'asking for no context');

# --- Counted.
my $status = decode_json(request('GET', '/status')->{content});
my ($live) = grep { $_->{name} eq 'live' } @{ $status->{providers} };
is($live->{step_ups}{auth_context}{started}, 4, 'step-ups for a context started');
is($live->{step_ups}{auth_context}{satisfied}, 2, 'satisfied');
is($live->{step_ups}{auth_context}{refused}, 2, 'refused');
is($live->{step_ups}{recent_signin}{started}, 2, 'step-ups for a recent sign-in started');
is($live->{step_ups}{recent_signin}{refused}, 1, 'refused');
is($live->{step_ups}{recent_signin}{satisfied}, 1, 'satisfied');
ok($live->{denied}{auth_context_missing} >= 5, 'auth_context_missing among the denials');
my $prom = request('GET', '/status?format=prometheus')->{content} // '';
like($prom, qr/entra_step_ups_total\{provider="live",reason="auth_context",event="started"\} 4/, 'and in Prometheus');

unlike(log_text(), qr/\[(alert|crit|emerg)\]/, 'no alert, crit or emerg line in the error log');

done_testing();
