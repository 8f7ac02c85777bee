# insite-notify killed -9 between an e-mail/webhook send and its record
# (test hook notify.test_crash_after): the attempt was recorded before the
# send (notification_attempts, outcome still empty), so the restarted worker
# knows the receiver may have it; it marks that attempt in_doubt and sends
# again with the same Message-ID / Idempotency-Key + X-Insite-Delivery-Id
# and the same body.  What the SMTP server (aiosmtpd) and the webhook
# receiver saw: two copies carrying one key, i.e. one message for a receiver
# that dedupes on it (docs/notify.md, "Exactly-once for e-mail and webhooks").
use strict;
use warnings;
use lib 't/lib';

use Test::More;
use Insite::Notify;
use Insite::Services qw(free_port wait_port run_cmd);

my $why = Insite::Notify::needs();
plan skip_all => $why if $why;
my $py = '/usr/bin/python3';
plan skip_all => Insite::Notify::peers_missing() if Insite::Notify::peers_missing();

my $n = Insite::Notify->new(tag => 't605', no_start => 1);
my $tmp = $n->tmp;
my $secret = "s3cret-for-$$-exactly-once";
my ($smtp_port, $hook_port) = $n->peers($secret, 'ok');

my %peer_env = (INSITE_NOTIFY_SMTP_URL => "smtp://127.0.0.1:$smtp_port",
                INSITE_NOTIFY_SMTP_FROM => 'InsiteChart <alerts@insite.test>',
                INSITE_NOTIFY_WEBHOOK_ALLOW_PRIVATE => 'true');
my $t0 = 1796176800;

sub hooks {
    return () unless -e "$tmp/hook.log";
    map { Insite::Notify::json()->decode($_) } split /\n/, do { local (@ARGV, $/) = "$tmp/hook.log"; <> };
}
sub mails { grep { /\.eml$/ } glob("$tmp/mail/*.eml") }
sub parse_mail {
    my ($out) = run_cmd(20, $py, 't/lib/notify_peers.py', 'parse', $_[0]);
    return eval { Insite::Notify::json()->decode($out) } // do { diag $out; {} };
}
sub delivery {
    my ($user, $ch) = @_;
    return $n->sql("SELECT d.id FROM notification_deliveries d JOIN notifications x ON x.id = d.notification_id "
                   . "WHERE x.user_id = '$user' AND d.channel = '$ch'");
}
sub attempts_of {
    my ($did) = @_;
    return $n->sql("SELECT string_agg(attempt || ':' || coalesce(outcome, 'open'), ',' ORDER BY attempt) "
                   . "FROM notification_attempts WHERE delivery_id = $did");
}

# ---- webhook: killed right after the receiver answered 200, before the record
my $u = "ivy-$$";
my $S = "W$$";
$n->start(%peer_env, INSITE_NOTIFY_TEST_CRASH_AFTER => 'webhook');
my ($st, $j) = $n->api(PUT => '/api/v1/alerts/settings', $u,
                       { channels => ['websocket', 'webhook'],
                         webhook_url => "http://127.0.0.1:$hook_port/hook", webhook_secret => $secret });
is($st, 200, 'settings: webhook channel') or diag explain $j;
($st) = $n->api(POST => '/api/v1/alerts/rules', $u, { type => 'price_above', symbol => $S, price => 100 });
is($st, 201, 'rule created');
$n->stock([$S, 99, $t0], [$S, 101, $t0 + 1]);
ok($n->reap(60), 'the worker killed itself right after the webhook send (test hook)') or diag $n->log_text;
my $did = delivery($u, 'webhook');
my @h = hooks();
is(scalar @h, 1, 'the receiver got the webhook once before the crash');
is($n->sql("SELECT status || ' ' || attempts FROM notification_deliveries WHERE id = $did"), 'pending 1',
   'the delivery is not recorded as delivered, but its attempt is counted');
is(attempts_of($did), '1:open', 'the attempt was recorded before the send, without an outcome');

$n->start(%peer_env);
ok(Insite::Notify::wait_for(60, sub {
    $n->sql("SELECT status FROM notification_deliveries WHERE id = $did") eq 'delivered' }),
   'after the restart: delivered') or diag $n->log_text;
is(attempts_of($did), '1:in_doubt,2:delivered', 'the interrupted attempt is marked in_doubt, the retry delivered');
@h = hooks();
is(scalar @h, 2, 'the receiver saw two requests (at-least-once on the wire)');
my $eid = $n->sql("SELECT event_id FROM notifications WHERE user_id = '$u'");
is_deeply([map { $_->{idempotency_key} } @h], [qq("$eid"), qq("$eid")],
          'both carry the same Idempotency-Key (the alert id)');
is_deeply([map { $_->{delivery_id} } @h], [$did, $did], '... and the same X-Insite-Delivery-Id');
is_deeply([map { $_->{attempt} } @h], [1, 2], '... X-Insite-Attempt counts the attempts');
is($h[0]{raw_body}, $h[1]{raw_body}, '... and the same body');
ok($h[0]{valid} && $h[1]{valid}, 'both signatures verify');
my %by_key = map { $_->{idempotency_key} => 1 } @h;
is(scalar keys %by_key, 1, 'a receiver deduping on Idempotency-Key keeps exactly one');
like($n->log_text, qr/previous attempt was interrupted/, 'the worker logged the doubtful attempt');
is(scalar($n->history($u)), 1, 'the WebSocket channel holds the alert once');

# ---- e-mail: killed right after the SMTP server accepted it
$n->stop;
my $v = "jay-$$";
my $E = "E$$";
$n->start(%peer_env, INSITE_NOTIFY_TEST_CRASH_AFTER => 'email');
($st) = $n->api(PUT => '/api/v1/alerts/settings', $v,
                { channels => ['email'], email => "jay$$\@example.test" });
is($st, 200, 'settings: e-mail channel');
$n->api(POST => '/api/v1/alerts/rules', $v, { type => 'price_below', symbol => $E, price => 50 });
$n->stock([$E, 51, $t0], [$E, 49, $t0 + 1]);
ok($n->reap(60), 'the worker killed itself right after the SMTP send (test hook)') or diag $n->log_text;
my $mid = delivery($v, 'email');
ok(Insite::Notify::wait_for(20, sub { scalar(mails()) == 1 }), 'the SMTP server holds one message');
is(attempts_of($mid), '1:open', 'its attempt was recorded before the send');
$n->start(%peer_env);
ok(Insite::Notify::wait_for(60, sub {
    $n->sql("SELECT status FROM notification_deliveries WHERE id = $mid") eq 'delivered' }),
   'after the restart: delivered') or diag $n->log_text;
is(attempts_of($mid), '1:in_doubt,2:delivered', 'in_doubt, then delivered');
ok(Insite::Notify::wait_for(20, sub { scalar(mails()) == 2 }), 'the SMTP server received it twice');
my @m = map { parse_mail($_) } sort(mails());
my $veid = $n->sql("SELECT event_id FROM notifications WHERE user_id = '$v'");
is_deeply([map { $_->{message_id} } @m], ["<$veid\@insite-notify>", "<$veid\@insite-notify>"],
          'both copies have the same Message-ID (a mail store keeps one)');
is_deeply([map { $_->{delivery_id} } @m], [$mid, $mid], '... and the same X-Insite-Delivery-Id');
is($m[0]{parts}[0]{text}, $m[1]{parts}[0]{text}, '... and the same text');

# ---- a delivery that is not interrupted is sent once, its attempt closed
my $w = "kim-$$";
($st) = $n->api(PUT => '/api/v1/alerts/settings', $w,
                { channels => ['webhook'], webhook_url => "http://127.0.0.1:$hook_port/hook",
                  webhook_secret => $secret });
$n->api(POST => '/api/v1/alerts/rules', $w, { type => 'price_above', symbol => "${S}K", price => 10 });
$n->stock(["${S}K", 9, $t0], ["${S}K", 11, $t0 + 1]);
my $kd;
ok(Insite::Notify::wait_for(60, sub { $kd = delivery($w, 'webhook');
    $kd && $n->sql("SELECT status FROM notification_deliveries WHERE id = $kd") eq 'delivered' }),
   'an uninterrupted webhook is delivered');
is(attempts_of($kd), '1:delivered', 'one attempt, closed as delivered');
is(scalar(grep { ($_->{delivery_id} // '') eq $kd } hooks()), 1, 'the receiver saw it once');

done_testing();
