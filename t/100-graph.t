# Group overage answered by Microsoft Graph (groups_from_graph on): a token (or a session) whose
# groups Entra left out gets in or not by what Graph says of the groups the configuration asks
# about, asked once per user with the app's own credential and shared by the workers; every
# failure of Graph or of the token endpoint is a 503 or a 403, never access. The development IdP
# plays Graph (its /_admin/graph controls and counters).
use strict;
use warnings;

use JSON::PP;
use Test::More;
use EntraTest;
use EntraBrowser;

my $port = ($ENV{TEST_NGINX_PORT} || 1984) + 180;
my $prefix = ($ENV{TEST_NGINX_SERVROOT} || 't/servroot') . '-graph';
my $idp = $ENV{TEST_NGINX_IDP_URL};
my $ADMINS = '0b9f3f6e-4a4c-4c1e-9a63-2f1d8f1b57e1';
my $READERS = '5a1e0f3c-7b2d-4e6a-8c9f-1d3b5e7a9c20';
my @MANY = map { sprintf '00000000-0000-4000-8000-%012d', $_ } 1 .. 25;
my $SEEN = '11111111-2222-4333-8444-555555555555';
my $THIRD = 'a3c1e2d4-5b6f-4a7e-8c9d-0e1f2a3b4c5d';

signin_prefix($prefix);
browser_origin("http://127.0.0.1:$port");

sub conf {
    my (%opt) = @_;
    my $admins = $opt{admins} // $ADMINS;
    my $provider = live_provider('client_secret_file secret;', 'session_key_file session.keys;',
        'groups_from_graph on;', 'graph_url $TEST_NGINX_IDP_URL/graph;', 'session_cookie entra;')
        . (live_provider('tenant organizations;', "allowed_tenants $TENANT $OTHER_TENANT $THIRD;",
            'client_secret_file secret;', 'groups_from_graph on;', 'graph_url $TEST_NGINX_IDP_URL/graph;')
            =~ s/entra_provider live/entra_provider multi/r);
    my $show = 'add_header X-Groups "$entra_groups" always; add_header X-Source "$entra_groups_source" always;'
        . ' add_header X-Error "$entra_error" always; add_header X-Pid "$pid" always;';
    my $backend = "proxy_pass http://127.0.0.1:$port/backend;";
    write_nginx_conf($prefix, $port, $provider, workers => 2, listen => 'reuseport', connections => 512,
        server => <<"SERVER");
        location /admins { entra_auth live; entra_require_group $admins; $show $backend }
        location /many { entra_auth multi; entra_require_group @MANY; $show $backend }
        location /plain { entra_auth live; $show $backend }
        location /multi { entra_auth multi; entra_require_group $ADMINS; $show $backend }
        location = /check { internal; entra_auth live; entra_require_group $ADMINS; $backend }
        location /guarded { auth_request /check; $backend }
        location /app { entra_auth live session; entra_require_group $ADMINS; $show $backend }
        location = /status { entra_status; }
SERVER
}

sub graph { decode_json(idp_admin('stats'))->{graph} }
sub calls { graph()->{calls} }
sub member { my ($user, @groups) = @_; idp_admin("graph?user=$user&groups=" . join ',', @groups) }
sub overage { my ($user, @more) = @_; live_idp('mint', '--user', $user, '--overage', '--claim-source', "$idp/_claim_source", @more) }
sub get {
    my ($path, $token) = @_;
    request('GET', $path, {}, $token ? (Authorization => "Bearer $token") : ());
}
sub status_of { my ($provider) = @_; (grep { $_->{name} eq $provider } @{ decode_json(get('/status')->{content})->{providers} })[0] }

conf();
my $pid = run_nginx($prefix, $port);
END { kill 'TERM', $pid if $pid }

# --- A member of the required group gets in; the answer says which asked groups.
member('erin', $ADMINS, $SEEN);
my $erin = overage('erin');
my $r = get('/admins', $erin);
is($r->{status}, 200, 'an overage token of a member gets in');
is($r->{headers}{'x-groups'}, $ADMINS, '$entra_groups shows the asked groups the user is in, no others');
is($r->{headers}{'x-source'}, 'graph', '$entra_groups_source says graph');
is(calls(), 1, 'one Graph call');
is(graph()->{app_tokens}{$TENANT}, 1, 'with one app token for the tenant');

# --- Later requests of the same user, at either worker, make no call.
my %pids;
for (1 .. 40) {
    my $again = get('/admins', $erin);
    $pids{ $again->{headers}{'x-pid'} }++ if $again->{status} == 200;
}
is(scalar keys %pids, 2, 'both workers answered') or diag explain \%pids;
is((sum0(values %pids)), 40, 'every later request got in');
is(calls(), 1, 'from the shared answer, without another Graph call');
sub sum0 { my $s = 0; $s += $_ for @_; $s }

# --- A user in none of the required groups: refused by the answer.
member('frank', $READERS);
$r = get('/admins', overage('frank'));
is($r->{status}, 403, 'a non-member is refused');
is($r->{headers}{'x-error'}, 'missing_group', 'as missing_group');
like($r->{headers}{'www-authenticate'}, qr/error="insufficient_scope"/, 'with insufficient_scope');

# --- A token with its groups in it never asks; nor does a location without a group requirement.
my $before = calls();
is(get('/admins', live_idp('mint', '--user', 'gil', '--groups', $ADMINS))->{headers}{'x-source'}, 'token',
    'groups from the token say token');
is(get('/plain', overage('gina'))->{status}, 200, 'an overage token where no group is required gets in');
is(calls(), $before, 'and neither asked Graph');

# --- An oid that is no object id is never put into Graph's URL.
$before = calls();
$r = get('/admins', overage('vera', '--claim', 'oid="../../users"'));
is($r->{status}, 403, 'a token whose oid is no object id: 403');
is($r->{headers}{'x-error'}, 'group_overage', 'as group_overage');
is(calls(), $before, 'without asking Graph');

# --- The _claim_sources URL of the token is never contacted.
is(graph()->{claim_source}, 0, "the token's _claim_sources endpoint was never contacted");

# --- More than 20 groups asked: several calls of 20 at most.
member('pia', $MANY[24]);
$before = calls();
is(get('/many', overage('pia'))->{status}, 200, 'a member of the 25th of 25 groups gets in');
is(calls() - $before, 2, 'asked in two calls');

# --- 100 concurrent requests of one user: one lookup.
member('hana', $ADMINS);
idp_admin('graph?mode=slow&ms=400');
$before = calls();
my $hana = overage('hana');
my %codes = concurrent_statuses($port, '/admins', 20, ($hana) x 100);
idp_admin('graph?mode=normal');
is($codes{200}, 100, '100 concurrent requests of one user all get in') or diag explain \%codes;
is(calls() - $before, 1, 'after one lookup');

# --- A subrequest never waits: auth_request answers 500 while the lookup runs, then 200.
member('olga', $ADMINS);
my $olga = overage('olga');
idp_admin('graph?mode=slow&ms=300');
is(get('/guarded', $olga)->{status}, 500, 'an auth_request subrequest does not wait: 503, which auth_request makes 500');
idp_admin('graph?mode=normal');
$before = calls();
# A main request waits for the lookup the subrequest started (and starts none of its own).
is(get('/admins', $olga)->{status}, 200, 'a main request of the same user waits for that lookup');
is(calls(), $before, 'which was the only one');
is(get('/guarded', $olga)->{status}, 200, 'once it has answered, the subrequest lets the user in');

# --- Graph down: 503 with Retry-After, never access; then in once Graph is back.
member('ivan', $ADMINS);
my $ivan = overage('ivan');
idp_admin('graph?mode=down');
$r = get('/admins', $ivan);
is($r->{status}, 503, 'Graph down: 503');
is($r->{headers}{'retry-after'}, 5, 'with Retry-After');
is($r->{headers}{'x-error'}, 'groups_unavailable', 'as groups_unavailable');
idp_admin('graph?mode=normal');
is(get('/admins', $ivan)->{status}, 200, 'Graph back: in');
like(log_text(), qr/\[error\] .*provider "live": group overage of tenant $TENANT not answered: .*graph/,
    'one error line names the tenant');

# --- An app token Graph refuses (401, revoked): 503, and the next lookup gets another.
member('wes', $ADMINS);
my $wes = overage('wes');
my $asked_tokens = graph()->{app_tokens}{$TENANT};
idp_admin('graph?revoke=1');
is(get('/admins', $wes)->{status}, 503, 'Graph refuses the app token: 503');
is(get('/admins', $wes)->{status}, 200, 'the next request gets in');
is(graph()->{app_tokens}{$TENANT}, $asked_tokens + 1, 'with a new app token');

# --- A garbage answer is an error, never a membership.
member('nina', $ADMINS);
idp_admin('graph?mode=garbage');
is(get('/admins', overage('nina'))->{status}, 503, 'a garbage answer: 503');
idp_admin('graph?mode=normal');

# --- Graph refusing (403) or not knowing the user (404): 403 group_overage.
idp_admin('graph?mode=forbidden');
$r = get('/admins', overage('lena'));
is($r->{status}, 403, 'Graph 403: 403');
is($r->{headers}{'x-error'}, 'group_overage', 'as group_overage');
idp_admin('graph?mode=not_found');
is(get('/admins', overage('mona'))->{status}, 403, 'Graph 404: 403');
idp_admin('graph?mode=normal');
is(get('/admins', overage('mona'))->{status}, 403, 'a 404 is remembered for a while');

# --- A browser sign-in of a user in 250 groups reaches the group-protected page.
idp_admin('approve?user=dana');
my ($callback, $jar) = sign_in('/app');
is($callback->{status}, 302, 'dana signs in');
my $cookie_bytes = 0;
$cookie_bytes += length("$_=$jar->{$_}") for grep { /^entra/ } keys %$jar;
cmp_ok($cookie_bytes, '<=', 6144, "the session's cookies stay within 6144 bytes ($cookie_bytes)");
$r = request('GET', '/app', $jar, %NAVIGATION);
is($r->{status}, 200, 'the 250-group user gets into the group-protected page');
is($r->{headers}{'x-source'}, 'graph', 'by what Graph said');

# --- A multi-tenant provider asks each tenant with that tenant's token.
member('quinn', $ADMINS);
is(get('/multi', overage('quinn'))->{status}, 200, 'a user of the home tenant');
is(get('/multi', overage('quinn', '--tid', $OTHER_TENANT))->{status}, 200, 'a user of the other tenant');
my $tokens = graph()->{app_tokens};
is($tokens->{$OTHER_TENANT}, 1, "the other tenant's own app token was asked for");

# --- A tenant that never consented: 403, remembered (no token request per request).
idp_admin("graph?unconsented=$THIRD");
$r = get('/multi', overage('rita', '--tid', $THIRD));
is($r->{status}, 403, 'a user of a tenant that never consented: 403');
is($r->{headers}{'x-error'}, 'group_overage', 'as group_overage');
like(log_text(), qr/group overage of tenant $THIRD not answered: the token endpoint refused the app's credential \(HTTP 400, AADSTS700016\)/,
    'the log names the tenant and the AADSTS code');
my $asked = graph()->{app_tokens}{$THIRD};
is(get('/multi', overage('sam', '--tid', $THIRD))->{status}, 403, 'another user of that tenant: 403 too');
is(graph()->{app_tokens}{$THIRD}, $asked, 'without another token request');

# --- A tenant throttled (429): 503 with its Retry-After, for every user of it until then.
idp_admin('graph?mode=throttle&retry=30');
member('tess', $ADMINS);
$r = get('/multi', overage('tess', '--tid', $OTHER_TENANT));
is($r->{status}, 503, 'Graph 429: 503');
ok($r->{headers}{'retry-after'} >= 29 && $r->{headers}{'retry-after'} <= 30, "with Graph's Retry-After")
    or diag $r->{headers}{'retry-after'};
idp_admin('graph?mode=normal');
$before = calls();
member('uma', $ADMINS);
is(get('/multi', overage('uma', '--tid', $OTHER_TENANT))->{status}, 503, 'another user of the throttled tenant: 503');
is(calls(), $before, 'without asking Graph before the Retry-After');
is(get('/multi', overage('uma'))->{status}, 200, 'the home tenant is not throttled');

# --- What entra_status counts.
my $live = status_of('live')->{graph};
cmp_ok($live->{lookups}, '>=', 10, 'lookups are counted');
cmp_ok($live->{answered}, '>=', 40, 'so are requests answered without a lookup');
is($live->{refused_forbidden}, 1, 'a Graph 403');
is($live->{refused_not_found}, 1, 'a Graph 404');
is($live->{bad_answer}, 1, 'a garbage answer');
cmp_ok($live->{unavailable}, '>=', 1, 'Graph down');
cmp_ok($live->{entries}, '>', 0, 'answers kept');
cmp_ok($live->{capacity}, '>=', 64, 'and the capacity');
my $multi = status_of('multi')->{graph};
is($multi->{refused_consent}, 1, 'the tenant that never consented, once');
is($multi->{throttled}, 1, 'the 429, once');
like(get('/status?format=prometheus')->{content}, qr/^entra_graph_events_total\{provider="live",event="lookups"\} \d+$/m,
    'and Prometheus shows them');

# --- A reload that asks about other groups asks Graph again.
conf(admins => $READERS);
reload_nginx($pid, $prefix);
$before = calls();
$r = get('/admins', $erin);
is($r->{status}, 403, 'erin is in none of the groups now required');
is(calls() - $before, 1, 'which Graph was asked about anew');
is(graph()->{claim_source}, 0, "no token's _claim_sources endpoint was ever contacted");

done_testing();
