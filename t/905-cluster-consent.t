# Consent at the edge on a real Redis Cluster (3 masters): insite-gdpr,
# given one seed node (redis.cluster), writes a user's consent hash
# <prefix>consent:{<user>} on the master of its slot and announces the change
# with SPUBLISH on the shard of <prefix>consent:changed (another master);
# nginx (insite_redis_cluster, 2 workers) reads the hash through the cluster
# adapter and SSUBSCRIBEs the channel on its owner.  A withdrawal made
# through the API is enforced on the next requests well before the cache's
# 60 s lifetime (only the notice drops a cached decision that soon), and a
# new grant restores access.  Then through two failovers (each master has a
# replica): the key's master killed -9 (a withdrawal is written on the
# promoted replica and enforced), then the channel's master (a new grant
# announced on the new owner, where nginx subscribed again).
#
# Needs INSITE_PG_DSN (scripts/test.sh exports it).
use strict;
use warnings;
use lib 't/lib';

use Cwd qw(getcwd);
use File::Temp ();
use JSON::PP ();
use Test::More;
use Time::HiRes qw(time sleep);

use Insite::JWT;
use Insite::Nginx;
use Insite::RedisCluster;
use Insite::Services qw(free_port wait_port http_request);

for my $v (qw(TEST_NGINX_LOAD_MODULES INSITE_PG_DSN)) {
    plan skip_all => "$v not set (run under scripts/test.sh)" unless $ENV{$v};
}
my $root = getcwd();
my $bin = "$root/build/bin/insite-gdpr";
plan skip_all => "$bin not built" unless -x $bin;

my $json = JSON::PP->new->utf8->canonical;
my $tmp = File::Temp::tempdir('insite-cconsent-XXXXXX', TMPDIR => 1, CLEANUP => 1);
chmod 0755, $tmp;
mkdir "$tmp/www";
Test::Nginx::Util::spew("$tmp/www/ok.txt", "ok\n");

sub slurp { local (@ARGV, $/) = @_; my $d = <>; $d // '' }
sub wait_for {
    my ($secs, $cond) = @_;
    my $deadline = time + $secs;
    while (time < $deadline) { return 1 if $cond->(); sleep 0.05 }
    return $cond->();
}
my $cl = Insite::RedisCluster->new(masters => 3, replicas => 1);
my $ranges = $cl->slot_ranges;
my $master_of = sub { $cl->master_of_slot($cl->slot_of($_[0]), undef, $ranges) };

# the channel's master, and a user whose consent key lives on another one
my $chan_master = $master_of->('insite:consent:changed');
my $user;
for my $i (1 .. 1000) {
    my $u = "cc$$-$i";
    if ($master_of->("insite:consent:{$u}")->port != $chan_master->port) { $user = $u; last }
}
ok($chan_master && $user, 'a user whose consent key is on another master than the channel');
my $key_master = $master_of->("insite:consent:{$user}");

my $api = free_port();
my %env = (
    INSITE_PG_DSN => $ENV{INSITE_PG_DSN}, INSITE_PG_MIGRATIONS_DIR => "$root/workers/migrations",
    INSITE_REDIS_CLUSTER => '127.0.0.1:' . ($cl->nodes)[0]->port,
    INSITE_REDIS_COMMAND_TIMEOUT => '500ms', INSITE_REDIS_CONNECT_TIMEOUT => '300ms',
    INSITE_GDPR_HTTP_PORT => $api, INSITE_GDPR_SYNC_INTERVAL => '100ms',
    INSITE_GDPR_CONSENT_TYPES => 'analytics=2026-01,marketing=3',
);
my $log = "$tmp/gdpr.log";
my $pid = Insite::Services::spawn($bin, \%env, $log);
END { kill 'TERM', $pid if $pid }
ok(wait_port($api, 20), 'insite-gdpr listens') or diag(slurp($log));

mkdir "$tmp/journal";
chmod 0777, "$tmp/journal";
# reuseport: the kernel spreads a client's connections over both workers;
# X-Worker tells which worker answered (each has its own cache)
my $port = free_port();
my $ngx = Insite::Nginx->new(
    http => "    insite_gdpr_journal $tmp/journal;\n"
          . "    insite_redis_cluster " . $cl->seeds . " connect_timeout=300ms command_timeout=500ms;\n"
          . <<"CONF",
    server {
        listen 127.0.0.1:$port reuseport;
        insite_gateway_jwt_secret "consent-secret";
        location /analytics/ { insite_gateway_jwt on; insite_gdpr_consent analytics;
                               add_header X-Worker \$pid always; alias $tmp/www/; }
        location /api/v1/gdpr/ { insite_gateway_jwt on;
                                 proxy_set_header X-User-Id \$insite_user_id;
                                 proxy_pass http://127.0.0.1:$api; }
        location = /metrics { insite_metrics; }
    }
CONF
);

my $tok = Insite::JWT::hs256('consent-secret', { sub => $user, exp => time + 3600 });
sub get {
    return http_request($port, 'GET', $_[0], headers => { Authorization => "Bearer $tok" }, timeout => 5);
}
sub consent {
    my ($granted) = @_;
    return http_request($port, 'POST', '/api/v1/gdpr/consents',
                        headers => { Authorization => "Bearer $tok", 'Content-Type' => 'application/json' },
                        body => $json->encode({ consent_type => 'analytics',
                                                granted => $granted ? JSON::PP::true : JSON::PP::false }),
                        timeout => 5);
}
# both nginx workers answer $want, and no request anything else (up to 60
# requests, each a new connection)
sub all_say {
    my ($want) = @_;
    my %seen;
    for (1 .. 60) {
        my $r = get('/analytics/ok.txt');
        return 0 unless ($r->{status} // 0) == $want;
        $seen{ $r->{headers}{'x-worker'} // '' }++;
        return 1 if keys %seen == 2;
    }
    return 0;
}
sub hits {
    (http_request($port, 'GET', '/metrics')->{body} =~ /^insite_gdpr_consent_cache_hits_total (\d+)/m)[0] // 0;
}

my $r;
ok(wait_for(20, sub { ($r = get('/analytics/ok.txt'))->{status} != 503 && all_say(403) }), 'nginx reached the cluster');
is($r->{status}, 403, 'no consent yet: 403');
is(eval { $json->decode($r->{body})->{error} } // '', 'consent_required', 'reason consent_required');

# ---- grant: written on the key's master, enforced
$r = consent(1);
is($r->{status}, 200, 'grant through the API: 200') or diag($r->{body});
ok(eval { $json->decode($r->{body})->{enforced_at_edge} }, 'the worker reports it at the edge')
    or diag(slurp($log));
is($key_master->cli('HGET', "insite:consent:{$user}", 'analytics'), '2026-01',
   'the consent hash is on the master of its slot');
ok(wait_for(10, sub { all_say(200) }), 'granted: 200 from both workers');

# every worker now answers from its cache (60 s lifetime)
my $h0 = hits();
ok(all_say(200), 'both workers: 200 again');
cmp_ok(hits(), '>', $h0, 'decisions come from the workers\' caches');

# ---- withdrawal: the SPUBLISH notice drops the cached decisions
$r = consent(0);
is($r->{status}, 200, 'withdrawal through the API: 200') or diag($r->{body});
my $t0 = time;
ok(wait_for(10, sub { all_say(403) }), 'withdrawn: 403 from both workers, long before their caches expire')
    or diag(sprintf 'still served after %.1f s', time - $t0);
is($key_master->cli('HGET', "insite:consent:{$user}", 'analytics'), '',
   'the withdrawal is in the consent hash');

# ---- grant again: restored (cached 403s dropped by the notice too)
ok(all_say(403), 'both workers: 403 again (cached)');
$r = consent(1);
is($r->{status}, 200, 'grant again: 200') or diag($r->{body});
ok(wait_for(10, sub { all_say(200) }), 'granted again: 200 from both workers');

# ---- failover of the key's master: the state is on the promoted replica
my $now_master_of = sub { $cl->master_of_slot($cl->slot_of($_[0])) };
ok($cl->failover_kill9($key_master, 30), "the key's master killed -9, its replica promoted");
my $key_master2 = $now_master_of->("insite:consent:{$user}");
ok($key_master2 && $key_master2->port != $key_master->port, 'the key has a new master');
is($key_master2->cli('HGET', "insite:consent:{$user}", 'analytics'), '2026-01',
   'the grant is on the promoted replica');
$r = consent(0);
is($r->{status}, 200, 'withdrawal after the failover: 200') or diag($r->{body});
ok(eval { $json->decode($r->{body})->{enforced_at_edge} }, '... written to the new master')
    or diag(slurp($log));
is($key_master2->cli('HGET', "insite:consent:{$user}", 'analytics'), '',
   'the withdrawal is in the hash on the new master');
ok(wait_for(10, sub { all_say(403) }), 'withdrawn after the failover: 403 from both workers');

# ---- failover of the channel's master: the notice goes to the new owner,
# where both nginx workers subscribed again
ok($cl->failover_kill9($chan_master, 30), "the channel's master killed -9, its replica promoted");
my $chan_master2 = $now_master_of->('insite:consent:changed');
ok($chan_master2 && $chan_master2->port != $chan_master->port, 'the channel has a new master');
my $subs = sub { ((split /\n/, $chan_master2->cli('PUBSUB', 'SHARDNUMSUB', 'insite:consent:changed') // '')[1]) // 0 };
ok(wait_for(20, sub { $subs->() == 2 }), 'both nginx workers subscribed on the new owner')
    or diag('subscribers: ', $subs->());
# the resubscription dropped the caches: fill them again, then only the
# notice can drop them within the deadline
ok(all_say(403), 'both workers: 403');
$h0 = hits();
ok(all_say(403), 'both workers: 403 again');
cmp_ok(hits(), '>', $h0, 'decisions cached again');
$r = consent(1);
is($r->{status}, 200, 'grant after the second failover: 200') or diag($r->{body});
ok(eval { $json->decode($r->{body})->{enforced_at_edge} }, '... announced') or diag(slurp($log));
ok(wait_for(10, sub { all_say(200) }), 'granted after both failovers: 200 from both workers');

unlike(slurp($log), qr/consent publish: redis/, 'the worker logged no Redis failure');
$ngx->check_log('no alerts in nginx');
done_testing();
