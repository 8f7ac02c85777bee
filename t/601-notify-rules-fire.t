# insite-notify on the stream: every rule type fires once at the crossing
# (not again while the condition stays true), a crossing inside the
# cooldown is swallowed, a one-shot rule fires once; each alert lands in
# notifications, on the user's alert:<user> channel (Redis history, what a
# WebSocket client replays) and in the Kafka alerts topic keyed by user.
use strict;
use warnings;
use lib 't/lib';

use Test::More;
use Insite::Notify;
use Insite::Services qw(run_cmd);

my $why = Insite::Notify::needs();
plan skip_all => $why if $why;

my $n = Insite::Notify->new(tag => 't601');
my $u = "carol-$$";
my $S = "Z$$";                       # symbols unique to this run
my %rule;
sub rule {
    my ($name, $body) = @_;
    my ($st, $j) = $n->api(POST => '/api/v1/alerts/rules', $u, $body);
    is($st, 201, "rule $name created") or diag explain $j;
    $rule{$name} = $j->{id};
}
rule(above    => { type => 'price_above', symbol => "${S}A", price => 200, cooldown_seconds => 60 });
rule(below    => { type => 'price_below', symbol => "${S}B", price => 100, recurring => JSON::PP::false });
rule(percent  => { type => 'percent_change', symbol => "${S}P", percent => 2, window_seconds => 60, direction => 'up' });
rule(volume   => { type => 'volume_spike', symbol => "${S}V", factor => 3, window_seconds => 600 });
rule(sabove   => { type => 'sentiment_above', symbol => "${S}S", level => 0.5 });
rule(sshift   => { type => 'sentiment_shift', symbol => "${S}H", delta => 0.3, window_seconds => 3600, direction => 'down' });

my $t0 = 1796176800;   # 2026-12-02T00:00:00Z
$n->stock(
    ["${S}A", 199, $t0], ["${S}A", 201, $t0 + 10], ["${S}A", 202, $t0 + 20], ["${S}A", 198, $t0 + 30],
    ["${S}A", 203, $t0 + 40],                       # crossing inside the 60 s cooldown
    ["${S}A", 199, $t0 + 100], ["${S}A", 201, $t0 + 110],   # after it: fires again
    ["${S}B", 101, $t0], ["${S}B", 99, $t0 + 10], ["${S}B", 101, $t0 + 20], ["${S}B", 98, $t0 + 30],
    ["${S}P", 100, $t0], ["${S}P", 101, $t0 + 10], ["${S}P", 102.5, $t0 + 20], ["${S}P", 103, $t0 + 30],
    (map { ["${S}V", 50, $t0 + $_, 100 * ($_ + 1)] } 0 .. 5),
    ["${S}V", 50, $t0 + 7, 600 + 500], ["${S}V", 50, $t0 + 8, 1100 + 600],
);
$n->sentiment(
    ["${S}S", 0.2, $t0], ["${S}S", 0.6, $t0 + 10], ["${S}S", 0.55, $t0 + 20],
    ["${S}H", 0.2, $t0], ["${S}H", 0.6, $t0 + 10], ["${S}H", 0.55, $t0 + 20], ["${S}H", -0.15, $t0 + 30],
);
my %want = (above => 2, below => 1, percent => 1, volume => 1, sabove => 1, sshift => 1);
my $total = 0;
$total += $_ for values %want;

sub counts {
    my %c = map { split /\|/ } split /\n/,
        $n->sql("SELECT rule_id, count(*) FROM notifications WHERE user_id = '$u' GROUP BY rule_id");
    return \%c;
}
Insite::Notify::wait_for(30, sub { my $c = counts(); my $s = 0; $s += $_ for values %$c; $s >= $total });
# a moment more: nothing else may fire
$n->stock(["${S}A", 205, $t0 + 120], ["${S}B", 97, $t0 + 40]);
Insite::Notify::wait_for(10, sub { $n->sql("SELECT count(*) FROM notify_offsets") > 0
                                   && $n->sql("SELECT coalesce(sum(next_offset),0) FROM notify_offsets") > 0 });
sleep 2;
my $c = counts();
for my $k (sort keys %want) {
    is($c->{ $rule{$k} } // 0, $want{$k}, "$k: fired $want{$k} time(s)");
}
is($n->sql("SELECT enabled FROM alert_rules WHERE id = $rule{below}"), 'f', 'the one-shot rule is disabled after firing');
is($n->sql("SELECT fired_count FROM alert_rule_state WHERE rule_id = $rule{above}"), 2, 'state: fired_count persisted');
is($n->sql("SELECT side FROM alert_rule_state WHERE rule_id = $rule{above}"), 2, 'state: side persisted (above)');
my $pct = $n->sql("SELECT args->>'change_percent' FROM notifications WHERE rule_id = $rule{percent}");
is($pct, '2.5', 'percent_change alert carries +2.5%');
my $ratio = $n->sql("SELECT args->>'ratio' FROM notifications WHERE rule_id = $rule{volume}");
ok($ratio >= 3, "volume spike ratio $ratio >= 3");

# delivered on the user's channel, one message per alert, in English
ok(Insite::Notify::wait_for(20, sub { scalar($n->history($u)) >= $total }), 'alerts published to alert:<user>');
my @h = $n->history($u);
is(scalar @h, $total, "$total messages in the channel history");
is($h[0]{type}, 'alert', 'message type alert');
my ($first) = grep { ($_->{data}{rule_id} // 0) == $rule{above} } @h;
is($first->{data}{title}, "${S}A rose above \$200.00", 'rendered title') or diag explain $first;
is(scalar(grep { $_->{data}{title} =~ /^Sentiment on ${S}H/ } @h), 1, 'sentiment shift alert rendered');

# the alerts topic, keyed by user, with the alert's event_id
my ($k) = run_cmd(30, 'kcat', '-C', '-b', $ENV{INSITE_KAFKA_BOOTSTRAP}, '-t', 'alerts', '-o', 'beginning',
                  '-e', '-q', '-f', "%k\t%s\n");
my @mine = grep { /^\Q$u\E\t/ } split /\n/, $k;
my %ids = map { (Insite::Notify::json()->decode((split /\t/, $_, 2)[1])->{event_id} => 1) } @mine;
is(scalar keys %ids, $total, "$total distinct alerts in the alerts topic under key $u");
my %db = map { $_ => 1 } split /\n/, $n->sql("SELECT event_id FROM notifications WHERE user_id = '$u'");
is_deeply(\%ids, \%db, "their event_ids are the alerts' ids");
# the WebSocket and Kafka outcomes are kept in the alert's own row; a
# delivery row exists only for e-mail, webhooks and failed sends
ok(Insite::Notify::wait_for(20, sub {
    $n->sql("SELECT count(*) FROM notifications WHERE user_id = '$u' AND websocket_status = 'delivered' "
            . "AND kafka_status = 'delivered' AND sent_at IS NOT NULL") == $total }),
   'every alert recorded as delivered over WebSocket and Kafka');
is($n->sql("SELECT count(*) FROM notification_deliveries d JOIN notifications x ON x.id = d.notification_id "
           . "WHERE x.user_id = '$u'"), 0, '... without delivery rows (none failed)');

# a WebSocket send that fails (this user id is too long for a channel name,
# alert:<125 characters>) gets a delivery row saying why, and its alert row
# says failed; the Kafka message still goes out
my $long = 'l' x 120 . sprintf('%05d', $$ % 100000);
my ($lst, $lj) = $n->api(POST => '/api/v1/alerts/rules', $long, { type => 'price_above', symbol => "${S}L", price => 10 });
is($lst, 201, 'rule of a user whose id cannot form a channel name') or diag explain $lj;
$n->stock(["${S}L", 9, $t0], ["${S}L", 11, $t0 + 1]);
ok(Insite::Notify::wait_for(30, sub {
    $n->sql("SELECT websocket_status || ' ' || kafka_status FROM notifications WHERE user_id = '$long'")
        eq 'failed delivered' }), 'WebSocket failed, Kafka delivered, in the alert row');
is($n->sql("SELECT d.channel || ' ' || d.status || ' ' || d.attempts || ' ' || d.error FROM notification_deliveries d "
           . "JOIN notifications x ON x.id = d.notification_id WHERE x.user_id = '$long'"),
   'websocket failed 1 the user id cannot form a channel name', '... and one delivery row: the failed send and why');

# the shared Kafka consumer series (workers/lib/kafka_metrics.h) on /metrics
my (undef, undef, $mr) = $n->api('GET', '/metrics');
my $grp = "notify-" . $n->tag;
my ($consumed) = ($mr->{body} // '') =~ /^insite_kafka_messages_consumed_total\{topic="stock_updates",group="\Q$grp\E"\} (\d+)$/m;
cmp_ok($consumed // 0, '>', 0, "insite_kafka_messages_consumed_total for stock_updates, group $grp");
my ($processed) = ($mr->{body} // '') =~ /^insite_kafka_processing_duration_seconds_count\{topic="stock_updates",event_type="stock_update"\} (\d+)$/m;
is($processed, $consumed, 'every consumed update was processed (histogram count)');

done_testing();
