# The session cookie: a 200-group session within the size limits and nginx's default header
# buffers, a larger one refused without a loop, stale chunks of a larger session cleared, key
# rotation (an old line still opens, a removed one does not), and sessions that end (lifetime,
# idle timeout).
use strict;
use warnings;

use MIME::Base64 qw(encode_base64);
use Test::More;
use Time::HiRes qw(time sleep);
use EntraTest;
use EntraBrowser;

my $port = ($ENV{TEST_NGINX_PORT} || 1984) + 70;
my $prefix = ($ENV{TEST_NGINX_SERVROOT} || 't/servroot') . '-sessions';
my $origin = "http://127.0.0.1:$port";

signin_prefix($prefix);
browser_origin($origin);

sub write_keys {
    open my $out, '>', "$prefix/conf/session.keys" or die $!;
    print $out map { encode_base64($_ x 32, '') . "\n" } @_;
    close $out;
    chmod 0600, "$prefix/conf/session.keys";
}
write_keys('1');

my $provider = live_provider('client_secret_file secret;', 'session_key_file session.keys;')
    . live_provider('client_secret_file secret;', 'session_key_file session.keys;', 'session_lifetime 3s;',
        'redirect_uri /short/callback;', 'frontchannel_logout_uri /short/logout;', 'session_cookie short;')
        =~ s/entra_provider live/entra_provider short/r
    . live_provider('client_secret_file secret;', 'session_key_file session.keys;', 'session_idle_timeout 2s;',
        'redirect_uri /idle/callback;', 'frontchannel_logout_uri /idle/logout;', 'session_cookie idle;')
        =~ s/entra_provider live/entra_provider idle/r
    . live_provider('client_secret_file secret;', 'session_key_file session.keys;', 'fetch_timeout 1s;',
        'redirect_uri /slow/callback;', 'frontchannel_logout_uri /slow/logout;', 'session_cookie slow;')
        =~ s/entra_provider live/entra_provider slow/r;
write_nginx_conf($prefix, $port, $provider, server => <<"LOCATIONS");
        location /app {
            entra_auth live session;
            proxy_set_header X-Groups \$entra_groups;
            proxy_pass http://127.0.0.1:$port/who;
        }
        location /short { entra_auth short session; proxy_pass http://127.0.0.1:$port/who; }
        location /idle { entra_auth idle session; proxy_pass http://127.0.0.1:$port/who; }
        location /slow { entra_auth slow session; proxy_pass http://127.0.0.1:$port/who; }
        location /open { entra_auth live session; proxy_pass http://127.0.0.1:$port/who; }
        location /members {
            entra_auth live session;
            entra_require_group 0b9f3f6e-4a4c-4c1e-9a63-2f1d8f1b57e1;
            proxy_pass http://127.0.0.1:$port/who;
        }
        location /staff {
            entra_auth live session;
            entra_require_group 00000000-0000-0000-0000-00000000beef;
            proxy_pass http://127.0.0.1:$port/who;
        }
        location /who { return 200 "groups=\$http_x_groups\\n"; }
LOCATIONS
my $pid = run_nginx($prefix, $port);

sub json_get { request('GET', $_[0], $_[1], Accept => 'application/json') }

# --- 200 groups fit.
idp_admin('approve?user=alice&groups=198');
my ($callback, $big) = sign_in('/app');
is($callback->{status}, 302, 'a 200-group user signs in');
my @chunks = grep { /^entra(-1)?=[^;]/ } set_cookies($callback);
is(scalar(@chunks), 2, 'in two chunks');
my $total = 0;
for (@chunks) {
    my ($pair) = /^([^;]+)/;
    cmp_ok(length($pair), '<=', 4096, 'each name=value within 4096 bytes');
    $total += length($pair) + 2;
}
cmp_ok($total - 2, '<=', 6144, 'together within 6144 bytes');
my $page = json_get('/app', $big);
is($page->{status}, 200, 'accepted through the default header buffers');
my @groups = split /,/, ($page->{content} =~ /groups=(\S*)/)[0] // '';
is(scalar(@groups), 200, 'with all 200 groups');

# --- The cookie budget: a 200-group session and pages that refuse it with long queries. A 403
# page starts no attempt; its "sign in as someone else", clicked in four tabs, keeps the session
# and transaction cookies within 7168 bytes, so every request still fits nginx's 8k line.
my @links;
for my $tab (1 .. 4) {
    my $refused = navigate('/staff?q=' . ('x' x 1000) . "&tab=$tab", $big);
    is($refused->{status}, 403, "403 page $tab");
    is(scalar(grep { /^entra-t\d=/ } set_cookies($refused)), 0, 'sets no transaction cookie');
    my ($link) = $refused->{content} =~ /<a href="([^"]+)">Sign in as someone else<\/a>/;
    push @links, $link =~ s/&amp;/&/gr;
}
like($links[0], qr{^/\.entra/callback\?select_account=%2Fstaff}, 'the link asks the callback path to start the attempt');
for my $link (@links) {
    my $clicked = navigate($link, $big);
    is($clicked->{status}, 302, 'clicked, it starts a sign-in');
    like($clicked->{headers}{location}, qr/[?&]prompt=select_account(&|$)/, 'with prompt=select_account');
    apply_cookies($big, $clicked);
    my $line = cookie_header(%$big);
    cmp_ok(length($line), '<=', 7168, 'the session and transaction cookies stay within 7168 bytes');
    is(json_get('/app', $big)->{status}, 200, 'and the session still gets in over the default header buffers');
}

# --- A smaller session clears the chunk of the larger one.
idp_admin('approve?user=alice');
my $jar = { 'entra-1' => $big->{'entra-1'} };
my ($small) = sign_in('/app', jar => $jar);
ok((grep { /^entra-1=; .*Max-Age=0/ } set_cookies($small)), 'the stale chunk is cleared');
ok(!exists $jar->{'entra-1'}, 'so the browser keeps one cookie');
like(json_get('/app', $jar)->{content}, qr/groups=[^,]+,[^,]+\n/, 'the new session has its two groups');

# --- Too large for its cookies: refused, without a loop.
idp_admin('approve?user=alice&groups=400');
my ($large) = sign_in('/app');
is($large->{status}, 403, 'a session that does not fit is refused');
is($large->{headers}{location}, undef, 'with no redirect');
like($large->{content}, qr/session_too_large/, 'the page names the reason');
like($large->{content}, qr/emit only the groups assigned to the application, or use app roles/, 'and what to do');
like(log_text(), qr/sign-in failed: session_too_large \(provider "live"\): 402 groups/, 'the log says so');

# --- Key rotation.
idp_admin('approve?user=alice');
my (undef, $old) = sign_in('/app');
is(json_get('/app', $old)->{status}, 200, 'a session sealed with key 1');
write_keys('2', '1');
reload_nginx($pid, $prefix);
is(json_get('/app', $old)->{status}, 200, 'still opens with key 1 as the second line');
my (undef, $new) = sign_in('/app');
write_keys('2');
reload_nginx($pid, $prefix);
is(json_get('/app', $new)->{status}, 200, 'a session sealed with the new first line opens');
is(json_get('/app', $old)->{status}, 401, 'one sealed with a removed line does not');
like(log_text(), qr/the session cookie counts as none: sealed with a key that is not configured/, 'and the log says which');
is(navigate('/app', $old)->{status}, 302, 'a navigation with it is sent to sign in');

# --- A valid session is accepted while the IdP is down: an outage signs nobody out.
idp_admin('approve?user=alice');
my (undef, $steady) = sign_in('/app');
idp_admin('mode?set=down');
is(json_get('/app', $steady)->{status}, 200, 'a session is accepted while the IdP is down');
idp_admin('mode?set=normal');

# --- A token endpoint that does not answer in time: 503 idp_unavailable, with Retry-After.
idp_admin('hold?path=/token');
my ($stalled) = sign_in('/slow');
idp_admin('release');
is($stalled->{status}, 503, 'a code exchange that takes too long ends in 503');
is($stalled->{headers}{'retry-after'}, '5', 'with Retry-After');
like($stalled->{content}, qr/idp_unavailable/, 'naming idp_unavailable');

# --- Group overage in the ID token: the session keeps the flag, group requirements refuse it.
idp_admin('break?id_token=overage');
my (undef, $overage) = sign_in('/open');
is(json_get('/open', $overage)->{status}, 200, 'an overage session is a session');
is(json_get('/members', $overage)->{status}, 403, 'but a group requirement refuses it');
like(log_text(), qr/access denied: group_overage \(provider "live"/, 'with group_overage');

# --- An ID token signed by a key rotated in after the keys were fetched: refreshed, then judged.
my $rotated = idp_admin('rotate');
my ($after_rotation) = sign_in('/app');
is($after_rotation->{status}, 302, 'the callback waits for the new key and signs in');
like(log_text(), qr/provider "live": key set fetched \(\d+ keys\).*signed in: provider "live"/s, 'after a refresh');

# --- Sessions end: session_lifetime 3s, session_idle_timeout 2s (the clock has to pass).
my (undef, $short) = sign_in('/short');
my (undef, $idle) = sign_in('/idle');
is(json_get('/short', $short)->{status}, 200, 'a short session');
is(json_get('/idle', $idle)->{status}, 200, 'an idle-limited session');
my $until = time + 3.2;
sleep 0.1 while time < $until;
is(json_get('/short', $short)->{status}, 401, 'the short session has expired');
like(log_text(), qr/access denied: session_expired \(provider "short"\)/, 'session_expired');
is(json_get('/idle', $idle)->{status}, 401, 'the idle one ended');
like(log_text(), qr/access denied: session_idle \(provider "idle"\)/, 'session_idle');

unlike(log_text(), qr/\[(alert|crit|emerg)\]/, 'no alert, crit or emerg line in the error log');

done_testing();
