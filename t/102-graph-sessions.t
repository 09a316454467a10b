# Graph's answer in a browser session (group overage), with nginx's wall clock moved on by
# libfaketime: the session carries the answer (re-sealed into its cookie on the request that got
# it, or sealed with it at sign-in when the zone had it) and needs no lookup while it holds; past
# groups_cache from when Graph answered, the next request asks Graph again, so that a member
# removed in the directory keeps access at most groups_cache.
use strict;
use warnings;

use JSON::PP;
use Test::More;
use EntraTest;
use EntraBrowser;

plan skip_all => 'libfaketime is not installed (scripts/test installs it)' unless faketime_library();

my $port = ($ENV{TEST_NGINX_PORT} || 1984) + 190;
my $prefix = ($ENV{TEST_NGINX_SERVROOT} || 't/servroot') . '-graph-sessions';
my $ADMINS = '0b9f3f6e-4a4c-4c1e-9a63-2f1d8f1b57e1';
my $READERS = '5a1e0f3c-7b2d-4e6a-8c9f-1d3b5e7a9c20';

signin_prefix($prefix);
browser_origin("http://127.0.0.1:$port");
write_nginx_conf($prefix, $port,
    live_provider('client_secret_file secret;', 'session_key_file session.keys;', 'session_cookie entra;',
        'groups_from_graph on;', 'graph_url $TEST_NGINX_IDP_URL/graph;', 'groups_cache 10m;'),
    main => $FAKETIME_ENV, server => <<"LOCATIONS");
        location /admin { entra_auth live session; entra_require_group $ADMINS;
            add_header X-Source "\$entra_groups_source" always; add_header X-Groups "\$entra_groups" always;
            proxy_pass http://127.0.0.1:$port/who; }
        location /admins-api { entra_auth live; entra_require_group $ADMINS; proxy_pass http://127.0.0.1:$port/who; }
        location /who { return 200 "in\\n"; }
LOCATIONS

sub start { run_nginx_on_clock($prefix, $port, 'approve?user=dana') }
my $pid = start();

sub calls { decode_json(idp_admin('stats'))->{graph}{calls} }
sub page { my ($jar) = @_; request('GET', '/admin', $jar, %NAVIGATION) }
sub session_cookies { grep { /^entra(-\d)?=/ } set_cookies($_[0]) }

# --- Signed in: the callback started the lookup; the first page waits for what is left of it.
my ($callback, $jar) = sign_in('/admin');
is($callback->{status}, 302, 'the user in 250 groups signs in');
my $first = page($jar);
is($first->{status}, 200, 'and reaches the page that requires a group Graph says she is in');
is($first->{headers}{'x-source'}, 'graph', 'by Graph');
is($first->{headers}{'x-groups'}, $ADMINS, 'which answered for the one group asked');
is(calls(), 1, 'asked once');
ok(scalar(session_cookies($first)), 'the session is re-sealed with the answer');
apply_cookies($jar, $first);
my $bytes = 0;
$bytes += length("$_=$jar->{$_}") for grep { /^entra/ } keys %$jar;
cmp_ok($bytes, '<=', 6144, "its cookies stay within 6144 bytes ($bytes)");

# --- While it holds, the session's own answer decides, even after a restart emptied the zone:
# no lookup.
kill 'TERM', $pid;
waitpid $pid, 0;
$pid = start();
idp_admin("graph?user=dana&groups=$READERS");
set_clock('+300');
my $held = page($jar);
is($held->{status}, 200, 'five minutes on, after a restart, removed in the directory, she still gets in (groups_cache 10m)');
is(calls(), 0, 'by the answer her session carries, without asking Graph');

# --- Past groups_cache: asked again, refused by the new answer.
set_clock('+660');
my $later = page($jar);
is($later->{status}, 403, 'past groups_cache, the removal shows');
like($later->{content}, qr/missing_group/, 'as missing_group');
is(calls(), 1, 'Graph was asked again');

# --- A session sealed with an answer the zone had keeps it as of when Graph gave it.
idp_admin("graph?user=dana&groups=$ADMINS");
set_clock('+1300');
my $dana = live_idp('mint', '--user', 'dana', '--overage');
is(request('GET', '/admins-api', {}, Authorization => "Bearer $dana")->{status}, 200, 'a token of hers asks Graph anew');
is(calls(), 2, 'once');
set_clock('+1600');
($callback, $jar) = sign_in('/admin');
is(page($jar)->{status}, 200, 'five minutes later she signs in, and her session has that answer');
is(calls(), 2, 'without asking again');
idp_admin("graph?user=dana&groups=$READERS");
set_clock('+1950');
is(page($jar)->{status}, 403, 'ten minutes after Graph answered (five after the sign-in), the removal shows');
is(calls(), 3, 'asked again');

done_testing();
