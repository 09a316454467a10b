# Staying in step with Entra (session_revalidate): a navigation after the interval goes through a
# silent authorize round trip (prompt=none, with the session's login_hint) and comes back with a
# fresh session; a user Entra no longer lets in is sent to sign in (one interactive attempt, never
# a second silent one); an answer for another user ends the session; scripts keep being served
# until the session is overdue by another interval, then get 401 session_stale.
use strict;
use warnings;

use Test::More;
use Time::HiRes qw(time sleep);
use EntraTest;
use EntraBrowser;

my $port = ($ENV{TEST_NGINX_PORT} || 1984) + 90;
my $prefix = ($ENV{TEST_NGINX_SERVROOT} || 't/servroot') . '-revalidate';
my $origin = "http://127.0.0.1:$port";

signin_prefix($prefix);
browser_origin($origin);
my $provider = live_provider('client_secret_file secret;', 'session_key_file session.keys;', 'session_revalidate 1s;');
write_nginx_conf($prefix, $port, $provider, server => <<"LOCATIONS");
        location /app {
            entra_auth live session;
            proxy_set_header X-Who \$entra_name;
            proxy_pass http://127.0.0.1:$port/who;
        }
        location /who { return 200 "who=\$http_x_who\\n"; }
        location /via-auth { auth_request /app/check; proxy_pass http://127.0.0.1:$port/who; }
LOCATIONS
my $pid = run_nginx($prefix, $port, 'approve?user=alice');

sub script { request('GET', '/app', $_[0], Accept => 'application/json') }
# The clock has to pass the interval: wait until $seconds after $since.
sub wait_until { my ($since, $seconds) = @_; sleep 0.05 while time < $since + $seconds }

# The IdP's answer to an authorize URL for a browser signed in there as $user.
sub at_idp { my ($url, $user) = @_; request('GET', $url, undef, Cookie => "idp_signin=$user")->{headers}{location} }

# A session keeps whole seconds: signing in early in a second puts the check below between the
# revalidation's due time and one interval after it, however the second falls.
sleep 0.01 while time - int(time) > 0.3;
my $signed_in = int time;
my (undef, $jar) = sign_in('/app');
is(script($jar)->{status}, 200, 'a fresh session');
wait_until($signed_in, 1.1);
is(script($jar)->{status}, 200, 'a script is still served once the revalidation is due');
# A subrequest cannot redirect: a navigation whose session is due gets 401 there, never 200.
is(navigate('/via-auth', $jar)->{status}, 401, 'an auth_request subrequest of a due navigation gets 401');
like(log_text(), qr/access denied: session_stale/, 'as session_stale');

# --- A due navigation revalidates silently.
my $nav = navigate('/app/page', $jar);
is($nav->{status}, 302, 'a navigation is sent to revalidate');
my %q = query_of($nav->{headers}{location});
is($q{prompt}, 'none', 'silently (prompt=none)');
ok($q{login_hint}, 'with the session\'s login_hint');
apply_cookies($jar, $nav);
my $revalidated_at = time;
my $back = navigate(at_idp($nav->{headers}{location}, 'alice'), $jar);
is($back->{status}, 302, 'Entra answers at once from its own session');
is($back->{headers}{location}, "$origin/app/page", 'back to the page');
my $old = $jar->{entra};
apply_cookies($jar, $back);
isnt($jar->{entra}, $old, 'with a fresh session cookie');
is(navigate('/app/page', $jar)->{status}, 200, 'which serves the navigation');

# --- An answer for another user ends the session.
wait_until($revalidated_at, 1.1);
my $swap = navigate('/app', { %$jar });
my $swap_jar = { %$jar };
apply_cookies($swap_jar, $swap);
my $other = navigate(at_idp($swap->{headers}{location}, 'bob'), $swap_jar);
is($other->{status}, 302, 'Entra answers for bob');
unlike({ query_of($other->{headers}{location}) }->{prompt} // '', qr/none/, 'an interactive sign-in starts');
ok((grep { /^entra=; .*Max-Age=0/ } set_cookies($other)), 'and alice\'s session is cleared');
like(log_text(), qr/revalidation answered for another user/, 'logged');

# --- A user Entra no longer lets in: one interactive attempt, never a second silent one.
idp_admin('disable?user=alice');
my $silent = navigate('/app', $jar);
my %sq = query_of($silent->{headers}{location});
is($sq{prompt}, 'none', 'the next navigation revalidates');
apply_cookies($jar, $silent);
my $refused = at_idp($silent->{headers}{location}, 'alice');
like($refused, qr/error=interaction_required/, 'Entra needs the user');
my $interactive = navigate($refused, $jar);
is($interactive->{status}, 302, 'the callback starts one interactive attempt');
like($interactive->{headers}{location}, qr{/oauth2/v2\.0/authorize\?}, 'at the authorize endpoint');
unlike($interactive->{headers}{location}, qr/prompt=none/, 'not silent');
apply_cookies($jar, $interactive);
my $denied = navigate(request('GET', $interactive->{headers}{location})->{headers}{location}, $jar);
is($denied->{status}, 401, 'the disabled user cannot sign in');
is($denied->{headers}{location}, undef, 'and is not sent round again');

# --- Scripts: served until overdue by another interval, then session_stale.
wait_until($revalidated_at, 2.1);
is(script($jar)->{status}, 401, 'a script with an overdue session gets 401');
like(log_text(), qr/access denied: session_stale/, 'session_stale');

unlike(log_text(), qr/\[(alert|crit|emerg)\]/, 'no alert, crit or emerg line in the error log');

done_testing();
