# Group overage answered by Graph, at its limits, with one worker: lookups of many users at once
# run on the entra_graph pool (8 threads), the others waiting for a turn, and every user gets in;
# a Graph answer of 64 KiB is read, one byte more is refused (503, never a membership).
use strict;
use warnings;

use JSON::PP;
use Test::More;
use EntraTest;
use EntraBrowser;

my $port = ($ENV{TEST_NGINX_PORT} || 1984) + 200;
my $prefix = ($ENV{TEST_NGINX_SERVROOT} || 't/servroot') . '-graph-limits';
my $ADMINS = '0b9f3f6e-4a4c-4c1e-9a63-2f1d8f1b57e1';

signin_prefix($prefix);
browser_origin("http://127.0.0.1:$port");
write_nginx_conf($prefix, $port,
    live_provider('client_secret_file secret;', 'groups_from_graph on;', 'graph_url $TEST_NGINX_IDP_URL/graph;'),
    connections => 512, server => <<"SERVER");
        location /admins { entra_auth live; entra_require_group $ADMINS; add_header X-Error "\$entra_error" always;
            proxy_pass http://127.0.0.1:$port/backend; }
SERVER
my $pid = run_nginx($prefix, $port);

sub graph { decode_json(idp_admin('stats'))->{graph} }
sub overage { live_idp('mint', '--user', $_[0], '--overage') }
sub get { request('GET', '/admins', {}, Authorization => "Bearer $_[0]") }

# The tenant's app token first: every lookup after it asks Graph at once.
idp_admin("graph?user=first&groups=$ADMINS");
is(get(overage('first'))->{status}, 200, 'a first user gets in (and the tenant its app token)');

# --- 70 users at once, Graph slow: 8 lookups at a time, the others wait for a turn.
my @users = map { "many$_" } 1 .. 70;
idp_admin("graph?user=$_&groups=$ADMINS") for @users;
my @tokens = map { overage($_) } @users;
idp_admin('graph?mode=slow&ms=300');
my $before = graph()->{calls};
my %codes = concurrent_statuses($port, '/admins', 30, @tokens);
idp_admin('graph?mode=normal');
is($codes{200}, 70, '70 users asked at once all get in') or diag explain \%codes;
is(graph()->{calls} - $before, 70, 'one lookup each');
my $most = graph()->{most_in_flight};
cmp_ok($most, '<=', 8, 'never more than the pool\'s 8 threads at once');
cmp_ok($most, '>=', 2, 'but several at once, not one after the other');

# --- A Graph answer of 64 KiB is read; one byte more is not.
idp_admin("graph?user=$_&groups=$ADMINS") for qw(at past);
idp_admin('mode?set=padded&bytes=65536');
my $at = get(overage('at'));
idp_admin('mode?set=padded&bytes=65537');
my $past = get(overage('past'));
idp_admin('mode?set=normal');
is($at->{status}, 200, 'an answer of 65536 bytes is read');
is($past->{status}, 503, 'one of 65537 is refused');
is($past->{headers}{'x-error'}, 'groups_unavailable', 'as groups_unavailable, never a membership');

done_testing();
