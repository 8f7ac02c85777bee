# insite_ws_publish_replicas N [timeout]: WAIT N on the channel's shard
# before a publish is acknowledged.
#  - nginx -t refuses bad values (N out of range, bad timeout, a timeout not
#    below the Redis command_timeout);
#  - on a real cluster (3 masters + 3 replicas): a publish asking more
#    replicas than exist gets 504 replication_timeout (and its retry with
#    the same Idempotency-Key is a duplicate, not a second message); with 1
#    replica it is acknowledged;
#  - kill -9 of a master while publishing with insite_ws_publish_replicas 1:
#    its replica is promoted and no acknowledged message is lost at all:
#    every subscriber on both nginx gets every acknowledged seq, with the
#    round it was acknowledged for, and no reset excuses a gap.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use Insite::RedisCluster;
use Insite::Nginx;
use Insite::WS;
use Insite::ClusterFeed;

# --- nginx -t ------------------------------------------------------------------------------

for my $t (['0', qr/"insite_ws_publish_replicas" must be "off" or 1 to 100 replicas, not "0"/],
           ['101', qr/must be "off" or 1 to 100 replicas, not "101"/],
           ['one', qr/must be "off" or 1 to 100 replicas, not "one"/],
           ['1 0ms', qr/"insite_ws_publish_replicas" timeout must be 1ms to 60s, not "0ms"/],
           ['1 2m', qr/timeout must be 1ms to 60s, not "2m"/],
           ['1 soon', qr/timeout must be 1ms to 60s, not "soon"/],
           ['off 10ms', qr/"insite_ws_publish_replicas" directive takes no timeout with "off"/],
           ['1 200ms', qr/"insite_ws_publish_replicas" timeout 200ms must be below the Redis command_timeout \(200ms\)/])
{
    my ($ok, $out) = Insite::Nginx->config_test(
        server => "        location /pub { insite_ws_publish; insite_ws_publish_replicas $t->[0]; }");
    ok(!$ok, "insite_ws_publish_replicas $t->[0]: nginx -t fails");
    like($out, $t->[1], "insite_ws_publish_replicas $t->[0]: the error says why") or diag $out;
}

{
    my ($ok, $out) = Insite::Nginx->config_test(
        server => "        location /pub { insite_ws_publish; insite_ws_publish_replicas 1 199ms; }");
    ok($ok, 'insite_ws_publish_replicas 1 199ms (below command_timeout): accepted') or diag $out;
    ($ok, $out) = Insite::Nginx->config_test(
        http => '    insite_ws_publish_replicas 2;',
        server => "        location /pub { insite_ws_publish; }\n"
                . "        location /p0 { insite_ws_publish; insite_ws_publish_replicas off; }");
    ok($ok, 'http-level value and a location turning it off: accepted') or diag $out;
    ($ok, $out) = Insite::Nginx->config_test(
        server => "        location /pub { insite_ws_publish; insite_ws_publish_replicas 1; "
                . "insite_ws_publish_replicas 2; }");
    ok(!$ok && $out =~ /"insite_ws_publish_replicas" directive is duplicate/,
       'given twice: nginx -t says it is a duplicate') or diag $out;
}

# --- a real cluster --------------------------------------------------------------------------

my $cl = Insite::RedisCluster->new(masters => 3, replicas => 1, node_timeout => 1500);

my ($A, $B) = Insite::ClusterFeed->start_servers($cl,
    http   => "    insite_ws_publish_replicas 1 200ms;",
    server => "        location /pub2 { insite_ws_publish; insite_ws_publish_replicas 2 50ms; }");

my $feed = Insite::ClusterFeed->new(cluster => $cl, servers => [$A, $B]);

# one replica per master: WAIT 2 cannot be met, WAIT 1 can, on every shard
for my $c ($feed->channels('w', 1)) {
    my $res = Insite::WS->publish($A->port, $c, { type => 'tick', data => { i => 1 } },
                                  key => "$c-k", path => '/pub2');
    is($res->{status}, 504, "$c: 2 replicas asked, 1 exists: 504");
    is($res->{json}{error}, 'replication_timeout', "$c: error replication_timeout");
    like($res->{json}{message}, qr/^published, but 1 of 2 replicas acknowledged it within 50ms/,
         "$c: the message says how many replicas, and that it was published");
    $res = Insite::WS->publish($B->port, $c, { type => 'tick', data => { i => 1 } }, key => "$c-k");
    is($res->{status}, 200, "$c: the retry with the same key through WAIT 1 is acknowledged");
    ok($res->{json}{duplicate} && $res->{json}{seq} == 1, "$c: as the duplicate of seq 1");
    $res = Insite::WS->publish($A->port, $c, { type => 'tick', data => { i => 2 } }, key => "$c-k2");
    is($res->{status}, 201, "$c: a new message through WAIT 1: 201");
    is($res->{json}{seq}, 2, "$c: seq 2");
}

# --- kill -9 of a master: no acknowledged message lost at all -------------------------------

{
    my @ch = $feed->channels('fk', 4);
    my $victim = $cl->master_of_slot($feed->slot_of_channel($ch[0]));
    my ($acked, $refused) = $feed->run_phase('kill -9 with WAIT 1', 30, sub {
        ok($cl->failover_kill9($victim, 30), 'master :' . $victim->port
           . ' killed, its slots served by the promoted replica');
        # the promoted master has no replica until the killed node comes
        # back as one: until then WAIT 1 refuses its publishes
        $victim->restart;
        ok($cl->wait_ok(30), 'the killed node rejoined as a replica');
    }, \@ch, strict => 1);
    diag 'refusals seen by the publisher: '
         . (join(', ', map { "$_ x$refused->{$_}" } sort keys %$refused) || 'none');
}

$A->stop;
$B->stop;
$A->check_log;
$B->check_log;
done_testing;
