# Consent writes that wait for replicas (redis.publish_replicas 1) on a real
# Redis Cluster (3 masters + 3 replicas): insite-gdpr (one seed) answers
# "enforced_at_edge": true only once the replica of the user's key holds the
# new consent hash (WAIT 1 on the connection that wrote it), so a change it
# acknowledged survives a kill -9 of that master right after the answer.
#
# The replica is made to lag for real: frozen (SIGSTOP) with its
# replication link cut (CLIENT KILL TYPE replica on the master), so a write
# made meanwhile is on the master only.
#  - control: the replica stays frozen past the WAIT timeout: the change is
#    refused as not durable ("enforced_at_edge": false, the worker logs
#    "written, but 0 of 1 replicas"), yet announced (nginx enforces the
#    master's state), and retried by the main loop until the thawed replica
#    has it;
#  - the replica is thawed 0.3 s into the request: the answer comes once it
#    caught up, the master is killed -9 at once, its replica promoted, and
#    the change is on it and enforced by nginx.  Without the WAIT (the
#    worker of main) the answer comes while the replica is frozen and the
#    change is lost with the master: this part fails.
#
# Needs INSITE_PG_DSN (scripts/test.sh exports it).  INSITE_GDPR_BIN picks
# the binary.
use strict;
use warnings;
use lib 't/lib';

use Cwd qw(getcwd);
use IO::Socket::INET ();
use File::Temp ();
use JSON::PP ();
use Test::More;
use POSIX ();
use Time::HiRes qw(time sleep);

use Insite::JWT;
use Insite::Nginx;
use Insite::RedisCluster;
use Insite::Services qw(free_port wait_port http_request);

for my $v (qw(TEST_NGINX_LOAD_MODULES INSITE_PG_DSN)) {
    plan skip_all => "$v not set (run under scripts/test.sh)" unless $ENV{$v};
}
my $root = getcwd();
my $bin = $ENV{INSITE_GDPR_BIN} // "$root/build/bin/insite-gdpr";
$bin = "$root/$bin" unless $bin =~ m{^/};
plan skip_all => "$bin not built" unless -x $bin;

my $json = JSON::PP->new->utf8->canonical;
my $tmp = File::Temp::tempdir('insite-creplicas-XXXXXX', TMPDIR => 1, CLEANUP => 1);
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
my $range_of = sub {
    my $s = $cl->slot_of($_[0]);
    (grep { $s >= $_->[0] && $s <= $_->[1] } @$ranges)[0];
};

# a user whose consent key is on another shard than the notice channel (the
# key's master is killed; the notice must still be heard)
my $chan_master = $range_of->('insite:consent:changed')->[2];
my $user;
for my $i (1 .. 1000) {
    my $u = "cr$$-$i";
    if ($range_of->("insite:consent:{$u}")->[2] != $chan_master) { $user = $u; last }
}
my $key = "insite:consent:{$user}";
my $m_port = $range_of->($key)->[2];
my $master = $cl->node_by_port($m_port);
my ($replica) = grep { ($_->cli('INFO', 'replication') // '') =~ /^master_port:$m_port\r?$/m } $cl->nodes;
my $r_port = $replica ? $replica->port : 0;
ok($user && $master && $replica, "user $user: key on master $m_port, its replica $r_port");

my $api = free_port();
my %env = (
    INSITE_PG_DSN => $ENV{INSITE_PG_DSN}, INSITE_PG_MIGRATIONS_DIR => "$root/workers/migrations",
    INSITE_REDIS_CLUSTER => '127.0.0.1:' . ($cl->nodes)[0]->port,
    INSITE_REDIS_COMMAND_TIMEOUT => '4s', INSITE_REDIS_CONNECT_TIMEOUT => '300ms',
    # the thawed replica reconnects within a second (its replication cron)
    # and acknowledges within another: 2.5 s leaves room for both
    INSITE_REDIS_PUBLISH_REPLICAS => 1, INSITE_REDIS_PUBLISH_REPLICAS_TIMEOUT => '2500ms',
    INSITE_GDPR_HTTP_PORT => $api, INSITE_GDPR_SYNC_INTERVAL => '100ms',
    INSITE_GDPR_CONSENT_TYPES => 'analytics=2026-01',
);
my $log = "$tmp/gdpr.log";
my $pid = Insite::Services::spawn($bin, \%env, $log);
END { kill 'TERM', $pid if $pid }
ok(wait_port($api, 20), 'insite-gdpr listens') or diag(slurp($log));

mkdir "$tmp/journal";
chmod 0777, "$tmp/journal";
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
    }
CONF
);

my $tok = Insite::JWT::hs256('consent-secret', { sub => $user, exp => time + 3600 });
sub get {
    return http_request($port, 'GET', $_[0], headers => { Authorization => "Bearer $tok" }, timeout => 5);
}
sub consent {
    my ($granted) = @_;
    my $r = http_request($port, 'POST', '/api/v1/gdpr/consents',
                         headers => { Authorization => "Bearer $tok", 'Content-Type' => 'application/json' },
                         body => $json->encode({ consent_type => 'analytics',
                                                 granted => $granted ? JSON::PP::true : JSON::PP::false }),
                         timeout => 10);
    $r->{json} = eval { $json->decode($r->{body}) } // {};
    return $r;
}
# both nginx workers answer $want, and no request anything else
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
sub metric {
    my ($name) = @_;
    (http_request($api, 'GET', '/metrics')->{body} // '') =~ /^insite_gdpr_\Q$name\E (\d+)/m ? $1 : -1;
}
# the user's analytics grant as one node holds it (READONLY: a replica too)
sub hget {
    my ($node) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $node->port, Timeout => 3)
        or return "connect: $!";
    print $s "READONLY\r\nHGET $key analytics\r\n";
    my $ok = <$s> // '';
    my $len = <$s> // '';
    return "unexpected: $ok $len" unless $ok =~ /^\+OK/ && $len =~ /^\$(-?\d+)/;
    return '' if $1 < 0;
    my $v = <$s> // '';
    $v =~ s/\r\n\z//;
    return $v;
}
# the replica stops reading, and the master drops it: writes from now on are
# on the master only (and its backlog, for the replica's PSYNC once thawed)
sub cut_replica {
    $replica->freeze;
    my $n = $master->cli('CLIENT', 'KILL', 'TYPE', 'replica') // '';
    my $info = $master->cli('INFO', 'replication') // '';
    return $n =~ /^[1-9]/ && $info =~ /connected_slaves:0/;
}

ok(wait_for(20, sub { (get('/analytics/ok.txt')->{status} // 0) != 503 && all_say(403) }),
   'nginx reached the cluster: no consent, 403');

# ---- a grant, with the replica in sync: acknowledged
my $r = consent(1);
is($r->{status}, 200, 'grant: 200') or diag($r->{body});
ok($r->{json}{enforced_at_edge}, 'grant: enforced at the edge (the replica acknowledged it)')
    or diag(slurp($log));
is(hget($replica), '2026-01', 'the grant is on the replica');
ok(wait_for(10, sub { all_say(200) }), 'granted: 200 from both workers');

# ---- control: the replica frozen and cut off for longer than the WAIT
ok(cut_replica(), 'replica frozen, its link cut (the master has no replica connected)');
my $errors = metric('consent_sync_errors_total');
$r = consent(0);
is($r->{status}, 200, 'withdrawal without a replica: 200 (recorded in PostgreSQL)') or diag($r->{body});
ok(defined $r->{json}{enforced_at_edge} && !$r->{json}{enforced_at_edge},
   '... but not enforced_at_edge: refused as not durable') or diag($r->{body});
like(slurp($log), qr/written, but 0 of 1 replicas acknowledged it within 2500 ms/,
     'the worker says the write ran, unreplicated');
is(hget($master), '', 'the master has the withdrawal');
ok(wait_for(10, sub { all_say(403) }), 'announced all the same: 403 from both workers');
ok(wait_for(10, sub { metric('consent_unsynced_users') >= 1 }), 'the user is still to be synced (the main loop retried)');
$replica->thaw;
ok(wait_for(20, sub { metric('consent_unsynced_users') == 0 }),
   'thawed: the main loop wrote it again and the replica acknowledged it') or diag(slurp($log));
cmp_ok(metric('consent_sync_errors_total'), '>', $errors, 'the retries are counted as sync errors');
ok(wait_for(10, sub { hget($replica) eq '' && $cl->replicas_synced }), 'the replica has the withdrawal');
ok(all_say(403) && all_say(403), 'both workers: 403, cached');

# ---- an acknowledged change survives the loss of its master right after
ok(cut_replica(), 'replica frozen and cut off again');
my $kid = fork // die "fork: $!";
if ($kid == 0) {            # thawed 0.3 s into the request
    sleep 0.3;
    kill 'CONT', $replica->pid;
    POSIX::_exit(0);
}
$r = consent(1);
$master->kill9;             # at once, before anything else
waitpid($kid, 0);
$replica->thaw;             # (already: the child did it)
is($r->{status}, 200, 'grant: 200') or diag($r->{body});
ok($r->{json}{enforced_at_edge}, 'grant: acknowledged (after the thawed replica caught up)')
    or diag($r->{body}, slurp($log));
ok($cl->failover_kill9($master, 30), 'its master killed -9 right after the answer; replica promoted');
my $new = $cl->master_of_slot($cl->slot_of($key));
is($new && $new->port, $r_port, 'the key\'s slots are on the promoted replica');
is(hget($replica), '2026-01', 'the acknowledged grant is on the promoted replica');
ok(wait_for(10, sub { all_say(200) }), 'and enforced: 200 from both workers');

$ngx->check_log('no alerts in nginx');
kill 'TERM', $pid;
waitpid($pid, 0);
$pid = undef;
done_testing();
