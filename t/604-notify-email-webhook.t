# insite-notify's e-mail and webhook channels against local peers
# (t/lib/notify_peers.py): the e-mail, parsed back with Python's email
# package, has an RFC 2047 UTF-8 subject in the user's language (Japanese),
# Message-ID, List-Unsubscribe, text and HTML parts (Arabic: dir="rtl");
# the webhook receiver verifies the HMAC-SHA256 signature; its first
# attempt fails (500) and the retry is recorded; a webhook that cannot be
# reached (private address refused) never holds the WebSocket delivery back.
use strict;
use warnings;
use utf8;
use lib 't/lib';

use Test::More;
use Insite::Notify;
use Insite::Services qw(free_port wait_port run_cmd);

my $why = Insite::Notify::needs();
plan skip_all => $why if $why;
my $py = '/usr/bin/python3';
plan skip_all => Insite::Notify::peers_missing() if Insite::Notify::peers_missing();

my $n = Insite::Notify->new(tag => 't604', no_start => 1);
my $tmp = $n->tmp;
my $secret = "s3cret-for-$$-webhooks";
my ($smtp_port, $hook_port) = $n->peers($secret);

$n->start(INSITE_NOTIFY_SMTP_URL => "smtp://127.0.0.1:$smtp_port",
          INSITE_NOTIFY_SMTP_FROM => 'InsiteChart <alerts@insite.test>',
          INSITE_NOTIFY_UNSUBSCRIBE_URL => 'https://insite.test/unsubscribe',
          INSITE_NOTIFY_WEBHOOK_ALLOW_PRIVATE => 'true');

my $u = "gus-$$";
my $S = "M$$";
my ($st, $j) = $n->api(PUT => '/api/v1/alerts/settings', $u,
                       { languages => ['ja'], time_zone => 'Asia/Tokyo',
                         channels => ['websocket', 'email', 'webhook'], email => "gus$$\@example.test",
                         webhook_url => "http://127.0.0.1:$hook_port/hook", webhook_secret => $secret });
is($st, 200, 'settings: Japanese, every channel') or diag explain $j;
($st, $j) = $n->api(POST => '/api/v1/alerts/rules', $u, { type => 'price_above', symbol => $S, price => 1000 });
my $t0 = 1796176800;
$n->stock([$S, 999, $t0], [$S, 1001.5, $t0 + 1]);

ok(Insite::Notify::wait_for(40, sub { -e "$tmp/mail/1.eml" }), 'an e-mail arrived') or diag $n->log_text;
my ($out) = run_cmd(20, $py, 't/lib/notify_peers.py', 'parse', "$tmp/mail/1.eml");
my $m = eval { Insite::Notify::json()->decode($out) } or diag $out;
is($m->{subject_decoded}, "${S}が\$1,000.00を上回りました", 'subject in Japanese, decoded by Python');
like($m->{subject_raw}, qr/^=\?UTF-8\?B\?[A-Za-z0-9+\/=]+\?=/, '... RFC 2047 encoded-word');
my $eid = $n->sql("SELECT event_id FROM notifications WHERE user_id = '$u'");
is($m->{message_id}, "<$eid\@insite-notify>", 'Message-ID from the alert id');
is($m->{list_unsubscribe}, "<https://insite.test/unsubscribe?user=$u>", 'List-Unsubscribe');
is($m->{list_unsubscribe_post}, 'List-Unsubscribe=One-Click', 'List-Unsubscribe-Post');
is($m->{to}, "gus$$\@example.test", 'To');
is($m->{content_type}, 'multipart/alternative', 'multipart/alternative');
is_deeply([map { $_->{type} } @{ $m->{parts} }], ['text/plain', 'text/html'], 'text and HTML parts');
like($m->{parts}[0]{text}, qr/${S}の現在値は\$1,001.50です/, 'text body in Japanese');
like($m->{parts}[1]{text}, qr/<html lang="ja" dir="ltr">/, 'HTML names the language');
is_deeply($m->{defects}, [], 'no MIME defects');
ok($m->{max_line} <= 998, 'no line over 998 octets');

ok(Insite::Notify::wait_for(40, sub {
    $n->sql("SELECT status || ' ' || attempts FROM notification_deliveries d JOIN notifications x "
            . "ON x.id = d.notification_id WHERE x.user_id = '$u' AND channel = 'webhook'") eq 'delivered 2' }),
   'webhook: failed once (500), delivered on the retry, both attempts recorded');
my @hooks = map { Insite::Notify::json()->decode($_) } split /\n/, do { local (@ARGV, $/) = "$tmp/hook.log"; <> };
is(scalar @hooks, 2, 'the receiver saw two requests');
ok($hooks[1]{valid} && $hooks[1]{fresh}, 'the signature verifies (HMAC-SHA256 over t.body)');
is($hooks[1]{event_id}, $eid, 'X-Insite-Event-Id');
is($hooks[1]{body}{title}, "${S}が\$1,000.00を上回りました", 'the body carries the rendered alert');
is(scalar($n->history($u)), 1, 'and the WebSocket channel got it once');

# ---- a webhook that cannot be delivered does not hold the others back
$n->stop;
$n->start(INSITE_NOTIFY_WEBHOOK_ALLOW_PRIVATE => 'false');   # 127.0.0.1 is refused now
my $v = "hana-$$";
($st, $j) = $n->api(PUT => '/api/v1/alerts/settings', $v,
                    { languages => ['ar'], channels => ['webhook', 'websocket'],
                      webhook_url => "http://127.0.0.1:$hook_port/hook", webhook_secret => $secret });
($st, $j) = $n->api(POST => '/api/v1/alerts/rules', $v, { type => 'price_below', symbol => "${S}X", price => 10 });
$n->stock(["${S}X", 11, $t0], ["${S}X", 9, $t0 + 1]);
ok(Insite::Notify::wait_for(40, sub { scalar($n->history($v)) == 1 }), 'WebSocket delivered');
ok(Insite::Notify::wait_for(20, sub {
    $n->sql("SELECT attempts > 0 AND status = 'pending' AND error LIKE 'webhook: the URL leads to a loopback or private address%' FROM notification_deliveries d "
            . "JOIN notifications x ON x.id = d.notification_id WHERE x.user_id = '$v' AND channel = 'webhook'") eq 't' }),
   'the webhook to a private address failed, recorded with its error, retried later');
my ($w) = $n->history($v);
is($w->{data}{dir}, 'rtl', 'Arabic alert marked right to left');
like($w->{data}{title}, qr/سعر ${S}X انخفض تحت/, 'title in Arabic');

done_testing();
