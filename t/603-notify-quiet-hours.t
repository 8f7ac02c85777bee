# Quiet hours with a fake clock across the end of daylight saving time in
# New York (2026-11-01 02:00 EDT -> 01:00 EST): CRITICAL is delivered at
# once; HIGH alerts are held until 07:00 local = 12:00 UTC that day (ICU's
# calendar; a fixed EDT offset would say 11:00) and then delivered as ONE
# message per rule with the count; LOW alerts become one digest.  Also:
# the per-user rate cap.
use strict;
use warnings;
use utf8;
use lib 't/lib';

use POSIX ();
use Test::More;
use Insite::Notify;

my $why = Insite::Notify::needs();
plan skip_all => $why if $why;

my $clock;
my $n = Insite::Notify->new(tag => 't603', no_start => 1);
$clock = $n->tmp . '/clock';
sub set_clock { open my $f, '>', "$clock.new" or die; print $f "$_[0]\n"; close $f; rename "$clock.new", $clock or die }
sub ms_utc { my ($y, $mo, $d, $h, $mi) = @_; local $ENV{TZ} = 'UTC'; POSIX::tzset(); my $t = POSIX::mktime(0, $mi, $h, $d, $mo - 1, $y - 1900); return $t * 1000 }
set_clock(ms_utc(2026, 11, 1, 3, 0));          # 23:00 EDT on Oct 31: quiet
$n->start(INSITE_NOTIFY_CLOCK_FILE => $clock);

my $u = "erin-$$";
my $S = "Q$$";
my ($st, $j) = $n->api(PUT => '/api/v1/alerts/settings', $u,
                       { languages => ['de', 'en'], time_zone => 'America/New_York',
                         quiet_hours => { start => '22:00', end => '07:00' } });
is($st, 200, 'settings: New York, quiet 22:00-07:00, German') or diag explain $j;
my %r;
for ([high => { type => 'price_above', symbol => "${S}H", price => 100, priority => 'HIGH' }],
     [low  => { type => 'price_below', symbol => "${S}L", price => 10, priority => 'LOW' }],
     [crit => { type => 'price_above', symbol => "${S}C", price => 5, priority => 'CRITICAL' }]) {
    ($st, $j) = $n->api(POST => '/api/v1/alerts/rules', $u, $_->[1]);
    is($st, 201, "$_->[0] rule");
    $r{ $_->[0] } = $j->{id};
}
my $t0 = 1793502000;
$n->stock(
    (map { (["${S}H", 99, $t0 + 10 * $_], ["${S}H", 101, $t0 + 10 * $_ + 5]) } 0 .. 2),   # 3 crossings
    (map { (["${S}L", 11, $t0 + 10 * $_], ["${S}L", 9, $t0 + 10 * $_ + 5]) } 0 .. 1),     # 2 crossings
    ["${S}C", 4, $t0], ["${S}C", 6, $t0 + 5],
);
ok(Insite::Notify::wait_for(30, sub { $n->sql("SELECT count(*) FROM notifications WHERE user_id = '$u'") == 6 }),
   '6 alerts fired');
ok(Insite::Notify::wait_for(20, sub { scalar($n->history($u)) >= 1 }), 'the CRITICAL one is delivered at once');
ok(Insite::Notify::wait_for(20, sub { $n->sql("SELECT count(*) FROM notifications WHERE user_id = '$u' AND state = 'held'") == 5 }),
   'the 5 others are held');
my $end = ms_utc(2026, 11, 1, 12, 0);
is($n->sql("SELECT DISTINCT due_ms FROM notifications WHERE user_id = '$u' AND state = 'held'"), $end,
   'held until 07:00 EST = 12:00 UTC (after the DST change)');

set_clock(ms_utc(2026, 11, 1, 11, 30));         # 06:30 EST: still quiet
sleep 2;
is(scalar($n->history($u)), 1, '06:30 local: still held');

set_clock(ms_utc(2026, 11, 1, 12, 0) + 1000);   # quiet hours over
ok(Insite::Notify::wait_for(30, sub { scalar($n->history($u)) >= 3 }), 'released after 07:00 local');
sleep 1;
my @h = $n->history($u);
is(scalar @h, 3, 'three messages in all: critical, one for the HIGH rule, one digest');
my ($high) = grep { ($_->{data}{rule_id} // 0) == $r{high} } @h;
is($high->{data}{count}, 3, 'the HIGH rule\'s alerts collapsed into one message with count 3');
like($high->{data}{body}, qr/3 Benachrichtigungen während der Ruhezeit/, '... said in German') or diag explain $high;
my ($dig) = grep { $_->{data}{template} eq 'digest' } @h;
ok($dig, 'a digest') or diag explain \@h;
like($dig->{data}{title}, qr/^2 Benachrichtigungen während der Ruhezeit/, '... of the 2 LOW alerts');
is($n->sql("SELECT count(*) FROM notifications WHERE rule_id = $r{high} AND state = 'collapsed'"), 2,
   'the collapsed alerts are marked');
is($n->sql("SELECT count(*) FROM notifications WHERE rule_id = $r{low} AND state = 'digested'"), 2,
   'the digested alerts are marked');

# ---- rate cap: 2 an hour, the third (non-critical) is capped
my $v = "fay-$$";
($st, $j) = $n->api(PUT => '/api/v1/alerts/settings', $v, { rate_per_hour => 2 });
is($st, 200, 'rate cap 2/h');
($st, $j) = $n->api(POST => '/api/v1/alerts/rules', $v, { type => 'price_above', symbol => "${S}R", price => 100 });
$n->stock(map { (["${S}R", 99, $t0 + 10 * $_], ["${S}R", 101, $t0 + 10 * $_ + 5]) } 0 .. 2);
ok(Insite::Notify::wait_for(30, sub { $n->sql("SELECT count(*) FROM notifications WHERE user_id = '$v' AND state <> 'new'") == 3 }),
   '3 alerts handled');
is($n->sql("SELECT string_agg(state, ',' ORDER BY id) FROM notifications WHERE user_id = '$v'"),
   'planned,planned,capped', 'the third is capped');
is(scalar($n->history($v)), 2, 'two delivered');

done_testing();
