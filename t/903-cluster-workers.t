# The workers' publish path on a real Redis Cluster (3 masters + 3
# replicas): insite-publish given one seed node (redis.cluster) publishes to
# channels on every master with the same publish.lua (SPUBLISH on the
# channel's shard); WebSocket clients of nginx (insite_redis_cluster) get
# every message, in one sequence shared with nginx's own publishes.  With
# redis.publish_replicas it waits for the replica (WAIT): 1 acknowledged,
# 2 (more than exist) reported as published but not replicated.
use strict;
use warnings;
use lib 't/lib';
use Cwd qw(getcwd);
use JSON::PP ();
use Test::More;
use Insite::Services qw(run_cmd);
use Insite::RedisCluster;
use Insite::Nginx;
use Insite::WS;
use Insite::ClusterFeed;

plan skip_all => 'TEST_NGINX_LOAD_MODULES not set (run under scripts/test.sh)'
    unless $ENV{TEST_NGINX_LOAD_MODULES};
my $bin = getcwd() . '/build/bin/insite-publish';
plan skip_all => "$bin not built" unless -x $bin;

my $json = JSON::PP->new->utf8;
my $cl = Insite::RedisCluster->new(masters => 3, replicas => 1);
my $ngx = Insite::Nginx->new(
    # no position check within the test: delivery is by sharded pub/sub
    http   => "    insite_redis_cluster " . $cl->seeds . ";\n    insite_ws_check_interval 60s;",
    server => "        location /ws { insite_ws; }\n"
            . "        location /pub { insite_ws_publish; }\n"
            . "        location /status { insite_ws_status; }",
);
ok(Insite::WS->wait_ready($ngx->port, timeout => 20), 'nginx: cluster connected');

my $seed = '127.0.0.1:' . ($cl->nodes)[0]->port;

sub cli {
    my ($env, @args) = @_;
    local $ENV{INSITE_REDIS_CLUSTER} = $seed;
    local $ENV{INSITE_LOG_LEVEL} = 'error';
    local @ENV{ keys %$env } = values %$env;
    my ($out, $rc) = run_cmd(30, $bin, @args);
    my ($line) = $out =~ /^(\{.*\})$/m;
    return ($rc, $line ? $json->decode($line) : undef, $out);
}

my $feed = Insite::ClusterFeed->new(cluster => $cl, servers => [$ngx]);
my @ch = $feed->channels('wk', 2);
my %owner = map { $_ => $cl->master_of_slot($feed->slot_of_channel($_))->port } @ch;
is(scalar(keys %{ { reverse %owner } }), 3, 'the channels live on all 3 masters');

my $ws = Insite::WS->connect($ngx->port);
$ws->subscribe(\@ch);

# each message is read before the next is published: a gap would be
# repaired from history, but a message alone arrives only by pub/sub
for my $c (@ch) {
    my ($rc, $o, $out) = cli({ INSITE_REDIS_PUBLISH_REPLICAS => 1 },
                             '--channel', $c, '--type', 'tick', '--data', '{"n":1}');
    is($rc, 0, "$c (on :$owner{$c}): insite-publish exit 0 with WAIT 1") or diag $out;
    is($o && $o->{seq}, 1, "$c: seq 1");
    my $m = $ws->recv_json(timeout => 5);
    is($m && "$m->{channel} $m->{seq}:$m->{data}{n}", "$c 1:1", "$c: the WebSocket client got it");
    my $r = Insite::WS->publish($ngx->port, $c, { type => 'tick', data => { n => 2 } });
    is($r->{json}{seq}, 2, "$c: nginx's publish takes seq 2: one sequence");
    $m = $ws->recv_json(timeout => 5);
    is($m && "$m->{channel} $m->{seq}:$m->{data}{n}", "$c 2:2", "$c: and then nginx's");
    is($cl->node_by_port($owner{$c})->cli('HGET', "insite:{$c}:seq", 'seq'), 2,
       "$c: the keys are on the channel's master");
}

my ($rc, $o, $out) = cli({ INSITE_REDIS_PUBLISH_REPLICAS => 2, INSITE_REDIS_PUBLISH_REPLICAS_TIMEOUT => '100ms' },
                         '--channel', $ch[0], '--type', 'tick', '--data', '{"n":3}',
                         '--idempotency-key', 'k3');
is($rc, 1, 'WAIT 2 with one replica: exit 1');
like($out, qr/published, but 1 of 2 replicas acknowledged it within 100 ms/, '... saying it ran, not replicated');
($rc, $o, $out) = cli({ INSITE_REDIS_PUBLISH_REPLICAS => 1 },
                      '--channel', $ch[0], '--type', 'tick', '--data', '{"n":3}', '--idempotency-key', 'k3');
is_deeply([$rc, $o && $o->{seq}, $o && $o->{duplicate}], [0, 3, JSON::PP::true],
          'the retry with the same key and WAIT 1: the duplicate of seq 3');

($rc, $o, $out) = cli({ INSITE_REDIS_CLUSTER => '127.0.0.1' }, '--channel', $ch[0], '--type', 't', '--data', '1');
is($rc, 1, 'a seed without a port: exit 1');
like($out, qr/redis\.cluster "127\.0\.0\.1": "127\.0\.0\.1" is not host:port/, '... saying why');

$ngx->stop;
$ngx->check_log;
done_testing;
