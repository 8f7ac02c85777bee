# insite-notify killed -9: between fire and delivery (the alert waits in
# the outbox) it is delivered exactly once after the restart; updates that
# arrive while it is down are evaluated against the persisted state (no
# re-fire, no miss); killed right after the WebSocket publish (before the
# delivery is recorded) the retry is recognised by its idempotency key: the
# channel still holds the alert once.
use strict;
use warnings;
use lib 't/lib';

use Test::More;
use Insite::Notify;

my $why = Insite::Notify::needs();
plan skip_all => $why if $why;

my $n = Insite::Notify->new(tag => 't602', env => { INSITE_NOTIFY_DELIVER => 'false' });
my $u = "dave-$$";
my $S = "K$$";
my $t0 = 1796176800;
my ($st, $j) = $n->api(POST => '/api/v1/alerts/rules', $u, { type => 'price_above', symbol => $S, price => 50 });
is($st, 201, 'rule created');
my $rid = $j->{id};

$n->stock([$S, 49, $t0], [$S, 51, $t0 + 1]);
ok(Insite::Notify::wait_for(30, sub { $n->sql("SELECT count(*) FROM notifications WHERE rule_id = $rid") == 1 }),
   'fired: the alert is in the outbox');
is($n->sql("SELECT state FROM notifications WHERE rule_id = $rid"), 'new', '... not delivered (delivery off)');
$n->kill9;
pass('worker killed -9 between fire and delivery');
is(scalar($n->history($u)), 0, 'nothing published yet');

# while it is down: still above (no new alert), then a new crossing
$n->stock([$S, 52, $t0 + 2], [$S, 48, $t0 + 3], [$S, 53, $t0 + 4]);
$n->start(INSITE_NOTIFY_DELIVER => 'true');
ok(Insite::Notify::wait_for(60, sub { scalar($n->history($u)) >= 2 }), 'restarted: alerts delivered');
sleep 2;
is($n->sql("SELECT count(*) FROM notifications WHERE rule_id = $rid"), 2,
   'exactly 2 alerts: the one before the crash and the new crossing, no re-fire');
my @h = $n->history($u);
is(scalar @h, 2, 'the channel holds each alert once');
my %seen = map { $_->{data}{event_id} => 1 } @h;
is(scalar keys %seen, 2, '... two distinct alerts');

# ---- killed right after the publish, before the delivery is recorded
$n->stop;
$n->start(INSITE_NOTIFY_DELIVER => 'true', INSITE_NOTIFY_TEST_CRASH_AFTER => 'websocket');
$n->stock([$S, 47, $t0 + 5], [$S, 54, $t0 + 6]);
ok($n->reap(60), 'the worker killed itself right after publishing (test hook)');
my $nid = $n->sql("SELECT max(id) FROM notifications WHERE rule_id = $rid");
# the alert was planned in the evaluation transaction; its sends are
# recorded in its row after them (deliver.c, send_queued)
is($n->sql("SELECT state || ' ' || websocket_status || ' ' || kafka_status || ' ' || (sent_at IS NULL) "
           . "FROM notifications WHERE id = $nid"), 'planned sending sending true',
   'the publish was not recorded: the alert is still to send');
is(scalar($n->history($u)), 3, 'the alert is in the channel');
$n->start(INSITE_NOTIFY_DELIVER => 'true');
ok(Insite::Notify::wait_for(60, sub {
    $n->sql("SELECT websocket_status || ' ' || kafka_status FROM notifications WHERE id = $nid")
        eq 'delivered delivered' }), 'after the restart it is sent again, and recorded');
@h = $n->history($u);
is(scalar @h, 3, 'the retry did not publish it twice');
# what the row says the user was sent is what the channel holds
my $eid = $n->sql("SELECT event_id FROM notifications WHERE id = $nid");
my ($pub) = grep { $_->{data}{event_id} eq $eid } @h;
ok($pub && length($pub->{data}{title}), 'the published alert has its text');
is($n->sql("SELECT title FROM notifications WHERE id = $nid"), $pub && $pub->{data}{title},
   'the alert row records the text that was published');
is($n->sql("SELECT count(*) FROM notifications WHERE rule_id = $rid"), 3, '3 alerts in all');

done_testing();
