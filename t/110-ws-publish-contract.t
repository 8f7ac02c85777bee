# The channel contract at the publish side (issue 11, findings 6, 7, 14 and
# "one home for the channel contract"): the server's own frame types cannot
# be published, through nginx (400 JSON) or the workers' path (insite-publish
# refuses); idempotency keys are scoped per channel; the keys of a channel
# share one Redis Cluster hash tag; and lua/publish.lua checks every argument
# before its first write, so a publish that answers an error changed nothing.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use Insite::Services qw(start_redis);
use Insite::Nginx;
use Insite::WS;

my $redis = start_redis();
my $rport = $redis->port;
my $root = $ENV{INSITE_ROOT} // '.';

my $ngx = Insite::Nginx->new(
    http   => "    insite_redis 127.0.0.1:$rport;\n"
            . "    insite_ws_shutdown_spread 100ms;",
    server => "        location /ws { insite_ws; }\n"
            . "        location /pub { insite_ws_publish; }\n"
            . "        location /status { insite_ws_status; }",
);
my $port = $ngx->port;
ok(Insite::WS->wait_ready($port), 'Redis connected in both workers');

END {
    diag "error log:\n" . Insite::WS->log_tail($ngx, 60)
        if $ngx && $ngx->pid && !Test::More->builder->is_passing;
}

sub pub { Insite::WS->publish($port, @_) }

# --- finding 14: reserved control types --------------------------------------
my $ws = Insite::WS->connect($port);
is($ws->subscribe(['ctl:x'])->{type}, 'subscribed', 'a subscriber of ctl:x');
for my $t (qw(reset error subscribed unsubscribed pong)) {
    my $res = pub('ctl:x', { type => $t, data => { channel => 'ctl:x', first_seq => 1 } });
    is($res->{status}, 400, "publish with type \"$t\": 400");
    is($res->{json} && $res->{json}{error}, 'bad_request', '... error bad_request');
    like($res->{json} && $res->{json}{message}, qr/reserved/, '... the message says the type is reserved');
}
my $res = pub('ctl:x', '{"type":"r\u0065set","data":1}');
is($res->{status}, 400, 'a reserved type written with a JSON escape: 400');
my $got = $ws->recv_json(timeout => 1);
ok(!$got, 'the subscriber got none of them') or diag explain $got;
is($redis->cli('EXISTS', 'insite:{ctl:x}:seq'), 0, 'and nothing was written for the channel');

# the workers' publish path applies the same rule
my $cli = "$root/build/bin/insite-publish";
SKIP: {
    skip "$cli not built", 4 unless -x $cli;
    local $ENV{INSITE_REDIS_PORT} = $rport;
    my $out = `'$cli' --channel ctl:x --type reset --data '{"first_seq":1}' 2>&1`;
    isnt($? >> 8, 0, 'insite-publish --type reset: refused (non-zero exit)');
    like($out, qr/reserved/, '... saying the type is reserved');
    $out = `'$cli' --channel ctl:x --type tick --data '{"n":1}' 2>&1`;
    is($? >> 8, 0, 'insite-publish --type tick: published') or diag $out;
    $got = $ws->recv_json(timeout => 5);
    is($got && $got->{type}, 'tick', 'the subscriber got the allowed one');
}
$ws->close;

# --- the key layout: every key of a channel in one hash tag -------------------
$res = pub('lay:out', { type => 't', data => 1 }, key => 'k-1');
is($res->{status}, 201, 'a publish with an Idempotency-Key');
is($redis->cli('HGET', 'insite:{lay:out}:seq', 'seq'), 1, 'seq in insite:{lay:out}:seq');
is($redis->cli('ZCARD', 'insite:{lay:out}:hist'), 1, 'history in insite:{lay:out}:hist');
is($redis->cli('GET', 'insite:{lay:out}:idem:k-1'), 1, 'the key in insite:{lay:out}:idem:k-1');
cmp_ok($redis->cli('TTL', 'insite:{lay:out}:idem:k-1'), '>', 0, '... which expires');

# --- finding 7: idempotency keys are scoped per channel ------------------------
my $a = pub('X', { data => 'first' }, key => 'b:c');
my $b = pub('X:b', { data => 'second' }, key => 'c');
is($a->{status}, 201, 'channel X, key b:c: published');
is($b->{status}, 201, 'channel X:b, key c: published too, not taken for a duplicate');
is($b->{json} && $b->{json}{duplicate}, JSON::PP::false(), '... duplicate false');
is($b->{json} && $b->{json}{seq}, 1, '... as X:b\'s first message');
my $again = pub('X', { data => 'first' }, key => 'b:c');
is($again->{status}, 200, 'the same key on the same channel is a duplicate');

# --- finding 6: a failing script call writes nothing ----------------------------
my $ch = 'safe:one';
is(pub($ch, { data => 1 })->{status}, 201, 'one message in safe:one');
my @state = ($redis->cli('HGET', "insite:{$ch}:seq", 'seq'), $redis->cli('ZCARD', "insite:{$ch}:hist"));
sub eval_publish {
    my (%o) = @_;
    return $redis->cli('EVAL', Insite::WS->publish_lua,
                       Insite::WS->publish_script_args($ch, data => '{"n":2}', %o));
}
like(eval_publish(idem => 'k', ttl => 0), qr/ERR.*idempotency lifetime/,
     'idempotency lifetime 0 (insite_ws_idempotency_ttl 0): the script answers an error');
like(eval_publish(keep => -1), qr/ERR.*history/, 'a negative history length: an error');
like(eval_publish(keep => 'x'), qr/ERR.*history/, 'a history length that is no number: an error');
is_deeply([$redis->cli('HGET', "insite:{$ch}:seq", 'seq'), $redis->cli('ZCARD', "insite:{$ch}:hist")],
          \@state, '... and seq and history are as before');
is($redis->cli('EXISTS', "insite:{$ch}:idem:k"), 0, '... and no idempotency key was stored');
like(eval_publish(idem => 'k2'), qr/^2\b/, 'with valid arguments the same call publishes seq 2');

$ngx->stop;
$ngx->check_log('no alerts');
done_testing();
