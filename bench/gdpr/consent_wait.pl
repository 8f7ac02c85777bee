#!/usr/bin/env perl
# What redis.publish_replicas 1 costs a consent change: two insite-gdpr
# workers on one Redis Cluster (3 masters + 3 replicas, t/lib's fixture)
# and one PostgreSQL, the same but for redis.publish_replicas (0 and 1,
# timeout 500ms), each answering POST /api/v1/gdpr/consents (PostgreSQL
# write, the MULTI on the key's master, WAIT 1 or not, SPUBLISH).  Rounds
# alternate between them (the order swapped each round), N changes a round,
# one at a time, each for a different user (keys spread over the shards).
# Prints per worker the latency of the answers (median, p90, p99, mean) and
# the median difference; every answer must say "enforced_at_edge": true.
# Its users are deleted from PostgreSQL afterwards (psql).
#
#   INSITE_PG_DSN=... perl bench/gdpr/consent_wait.pl      N=300 ROUNDS=3
# Needs the worker (make workers), redis-server and PostgreSQL
# (scripts/services.sh start, then . $INSITE_RUN_DIR/services.env).
use strict;
use warnings;
use FindBin ();
use lib "$FindBin::Bin/../../t/lib";

use Cwd qw(getcwd);
use File::Temp ();
use Time::HiRes qw(time sleep);

use Insite::RedisCluster;
use Insite::Services qw(free_port wait_port http_request);

my $root = "$FindBin::Bin/../..";
my $bin = "$root/build/bin/insite-gdpr";
my ($N, $ROUNDS) = ($ENV{N} // 300, $ENV{ROUNDS} // 3);
die "INSITE_PG_DSN not set\n" unless $ENV{INSITE_PG_DSN};
die "$bin not built\n" unless -x $bin;

my $tmp = File::Temp::tempdir('insite-bench-cwait-XXXXXX', TMPDIR => 1, CLEANUP => 1);
my $cl = Insite::RedisCluster->new(masters => 3, replicas => 1);
my (%port, @pids);
# the bench's users go again (their events too: allowed inside an erasure),
# so the next worker's full republish at start does not meet them
END {
    kill 'TERM', $_ for @pids;
    waitpid($_, 0) for @pids;
    system('psql', '-q', $ENV{INSITE_PG_DSN}, '-c',
           "BEGIN; SET LOCAL insite.erasure = 'on';"
           . " DELETE FROM user_consent_events WHERE user_id LIKE 'bench-cw$$-%';"
           . " DELETE FROM user_consents WHERE user_id LIKE 'bench-cw$$-%';"
           . " DELETE FROM user_consent_sync WHERE user_id LIKE 'bench-cw$$-%'; COMMIT;") == 0
        or warn "could not delete the bench's users (bench-cw$$-*)\n";
}
for my $wait (0, 1) {
    $port{$wait} = free_port();
    push @pids, Insite::Services::spawn($bin, {
        INSITE_PG_DSN => $ENV{INSITE_PG_DSN}, INSITE_PG_MIGRATIONS_DIR => "$root/workers/migrations",
        INSITE_REDIS_CLUSTER => join(',', map { '127.0.0.1:' . $_->port } $cl->nodes),
        INSITE_REDIS_PUBLISH_REPLICAS => $wait, INSITE_REDIS_PUBLISH_REPLICAS_TIMEOUT => '500ms',
        INSITE_GDPR_HTTP_PORT => $port{$wait}, INSITE_GDPR_CONSENT_TYPES => 'analytics=1',
    }, "$tmp/gdpr-$wait.log");
    wait_port($port{$wait}, 20) or die "insite-gdpr (WAIT $wait) does not listen\n";
}

my %lat = (0 => [], 1 => []);
my $bad = 0;
sub round {
    my ($wait, $r) = @_;
    for my $i (1 .. $N) {
        my $user = "bench-cw$$-$wait-$r-$i";
        my $t0 = time;
        my $res = http_request($port{$wait}, 'POST', '/api/v1/gdpr/consents',
                               headers => { 'X-User-Id' => $user, 'Content-Type' => 'application/json' },
                               body => '{"consent_type":"analytics","granted":true}');
        push @{ $lat{$wait} }, (time - $t0) * 1000;
        $bad++ unless ($res->{status} // 0) == 200 && ($res->{body} // '') =~ /"enforced_at_edge":\s*true/;
    }
}
http_request($port{$_}, 'POST', '/api/v1/gdpr/consents',       # warm up
             headers => { 'X-User-Id' => "bench-cw$$-warm", 'Content-Type' => 'application/json' },
             body => '{"consent_type":"analytics","granted":true}') for 0, 1;
for my $r (1 .. $ROUNDS) {
    round($_, $r) for $r % 2 ? (0, 1) : (1, 0);
}

sub pct {
    my ($v, $p) = @_;
    my @s = sort { $a <=> $b } @$v;
    return $s[int($p * $#s + 0.5)];
}
printf "# %d changes a worker in %d rounds, one at a time, 3 masters + 3 replicas\n", $N * $ROUNDS, $ROUNDS;
for my $w (0, 1) {
    my $v = $lat{$w};
    my $mean = 0;
    $mean += $_ for @$v;
    printf "publish_replicas %d: median %.2f ms  p90 %.2f  p99 %.2f  mean %.2f\n",
           $w, pct($v, 0.5), pct($v, 0.9), pct($v, 0.99), $mean / @$v;
}
printf "WAIT 1 adds (median): %.2f ms\n", pct($lat{1}, 0.5) - pct($lat{0}, 0.5);
printf "answers not 200 + enforced_at_edge: %d\n", $bad;
exit($bad ? 1 : 0);
