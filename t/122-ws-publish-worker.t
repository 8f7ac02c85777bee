# insite-publish (workers/publish): one message published the way the
# workers do, seen by a WebSocket client through nginx.  It shares the
# channel's sequence with insite_ws_publish, prints what Redis assigned,
# honours idempotency keys (a duplicate is reported and not delivered
# again), refuses data that is not JSON without publishing anything, and
# with --topic also produces one enveloped message to Kafka.
#
# The Kafka part needs INSITE_KAFKA_BOOTSTRAP (scripts/test.sh exports it).
use strict;
use warnings;
use lib 't/lib';
use Cwd qw(getcwd);
use File::Temp ();
use JSON::PP ();
use Test::More;
use Insite::Services qw(start_redis run_cmd);
use Insite::Nginx;
use Insite::WS;

plan skip_all => 'TEST_NGINX_LOAD_MODULES not set (run under scripts/test.sh)'
    unless $ENV{TEST_NGINX_LOAD_MODULES};
my $bin = getcwd() . '/build/bin/insite-publish';
plan skip_all => "$bin not built" unless -x $bin;

my $json = JSON::PP->new->utf8;
my $redis = start_redis();
my $ngx = Insite::Nginx->new(
    http   => "    insite_redis 127.0.0.1:" . $redis->port . ";",
    server => "        location /ws { insite_ws; }\n"
            . "        location /pub { insite_ws_publish; }\n"
            . "        location /status { insite_ws_status; }",
);
ok(Insite::WS->wait_ready($ngx->port), 'Redis connected in both workers');

sub cli {
    my (@args) = @_;
    local $ENV{INSITE_REDIS_PORT} = $redis->port;
    local $ENV{INSITE_LOG_LEVEL} = 'error';
    my ($out, $rc) = run_cmd(30, $bin, @args);
    my ($line) = $out =~ /^(\{.*\})$/m;
    return ($rc, $line ? $json->decode($line) : undef, $out);
}

my $ch = 'stock_updates:CLI';
my $ws = Insite::WS->connect($ngx->port);
my $sub = $ws->subscribe([$ch]);
my $epoch = $sub->{channels}{$ch}{epoch};

my ($rc, $o, $out) = cli('--channel', $ch, '--type', 'stock_update', '--data', '{"price":187.5}');
is($rc, 0, 'insite-publish: exit 0') or diag($out);
is($epoch, '', 'a channel never published has no epoch yet (subscribing leaves no state)');
like($o && $o->{epoch}, qr/^[0-9a-f]{16}$/, 'the first publish makes the epoch');
is_deeply($o, { channel => $ch, seq => 1, epoch => $o && $o->{epoch}, duplicate => JSON::PP::false },
          'prints the channel, seq 1, the epoch, duplicate false');
my $m = $ws->recv_json(timeout => 5);
is_deeply([@{ $m // {} }{qw(type channel seq)}, $m && $m->{data}], ['stock_update', $ch, 1, { price => 187.5 }],
          'the client gets it: type, channel, seq, data as given');
like($m && $m->{ts}, qr/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/, '... with an RFC 3339 ts');

my $r = Insite::WS->publish($ngx->port, $ch, { type => 'stock_update', data => { price => 188 } });
is($r->{json}{seq}, 2, 'nginx publishes the next seq: one sequence for both');
is($ws->recv_json(timeout => 5)->{seq}, 2, 'delivered');

($rc, $o) = cli('--channel', $ch, '--type', 'stock_update', '--data', '{"price":189}', '--idempotency-key', "k$$");
is_deeply([$rc, $o->{seq}, $o->{duplicate}], [0, 3, JSON::PP::false], 'with an idempotency key: seq 3');
($rc, $o) = cli('--channel', $ch, '--type', 'stock_update', '--data', '{"price":999}', '--idempotency-key', "k$$");
is_deeply([$rc, $o->{seq}, $o->{duplicate}], [0, 3, JSON::PP::true],
          'the same key again: seq 3 reported, duplicate true');
my @got = $ws->collect(quiet => 1, timeout => 3);
is(join(' ', map { "$_->{seq}:$_->{data}{price}" } @got), '3:189', 'the client gets seq 3 once, the first data');

($rc, $o, $out) = cli('--channel', $ch, '--type', 'stock_update', '--data', 'not json');
is($rc, 1, 'data that is not JSON: exit 1');
like($out, qr/not a JSON value/, '... saying why');
($rc, $o, $out) = cli('--channel', 'bad channel!', '--type', 't', '--data', '1');
is($rc, 1, 'an invalid channel name: exit 1');
($rc) = cli('--channel', $ch, '--type', 'stock_update');
is($rc, 2, 'no --data: usage error, exit 2');
is($redis->cli('HGET', "insite:{$ch}:seq", 'seq'), 3, 'nothing was published by the refused calls');
ok(!$ws->recv_json(timeout => 0.5), '... and the client got nothing more');

SKIP: {
    skip 'INSITE_KAFKA_BOOTSTRAP not set', 6 unless $ENV{INSITE_KAFKA_BOOTSTRAP};
    local $ENV{INSITE_KAFKA_BOOTSTRAP} = $ENV{INSITE_KAFKA_BOOTSTRAP};
    local $ENV{INSITE_KAFKA_SPOOL_DIR} = File::Temp::tempdir('insite-publish-XXXXXX', TMPDIR => 1, CLEANUP => 1);
    my $corr = "corr-$$";
    ($rc, $o, $out) = cli('--channel', $ch, '--type', 'stock_update', '--data', '{"price":190}',
                          '--topic', 'stock_updates', '--key', 'CLI', '--correlation-id', $corr);
    is($rc, 0, '--topic: exit 0') or diag($out);
    is($o && $o->{seq}, 4, '... Redis got seq 4');
    like($o && $o->{event_id}, qr/^[0-9a-f-]{36}$/, '... and the event id is printed');
    my ($k) = run_cmd(30, 'kcat', '-C', '-b', $ENV{INSITE_KAFKA_BOOTSTRAP}, '-t', 'stock_updates',
                      '-o', 'beginning', '-e', '-q', '-f', '%k\t%s\n');
    my @mine = grep { $_->[1]{event_id} eq ($o->{event_id} // '') }
               map { my ($key, $v) = split /\t/, $_, 2; [$key, eval { $json->decode($v) } // {}] }
               split /\n/, $k;
    is(scalar @mine, 1, 'one Kafka message with that event id');
    is($mine[0] && $mine[0][0], 'CLI', '... keyed by --key');
    is_deeply($mine[0] && [@{ $mine[0][1] }{qw(event_type source_service correlation_id)}, $mine[0][1]{data}],
              ['stock_update', 'insite-publish', $corr, { price => 190 }], '... the envelope');
}
$ws->close;
$ngx->check_log;
done_testing();
