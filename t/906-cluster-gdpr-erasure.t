# insite-gdpr beyond consent on a real Redis Cluster (3 masters), given one
# seed node (redis.cluster):
#
# - erasure: a user's exact keys on all three masters (each routed to its
#   slot's owner) and a "match" family spread over all three (SCAN on every
#   master) are counted before the action (the receipt's rows, the export's
#   "exists") and all gone afterwards, seen by redis-cli on each master;
#   another user's keys stay;
# - erasure during a live reshard: another user's exact key and one key of
#   the family are each held in a slot mid-migration (the key moved: ASK
#   for EXISTS and DEL, MOVED for a DEL sent where SCAN listed it), and
#   while the job is held after SCANning the first master, the slots of the
#   family keys on the last master are moved, keys and all, to the first:
#   that walk misses them (the design's known hole), the verification scan
#   finds them and re-opens the step, and the request completes with no key
#   of the user on any master and every key of the other user still there;
# - the consent sync marker is per master: a master other than the one a
#   single marker key would live on restarts empty, and the consent hash of
#   a user on it comes back (a full republish), with a marker on every
#   master again.
#
# Needs INSITE_PG_DSN and INSITE_KAFKA_BOOTSTRAP (scripts/test.sh exports
# them).  INSITE_GDPR_BIN picks the binary.
use strict;
use warnings;
use lib 't/lib';

use Cwd qw(getcwd);
use File::Temp ();
use JSON::PP ();
use Test::More;
use Time::HiRes qw(time sleep);

use Insite::RedisCluster;
use Insite::Services qw(free_port wait_port http_request run_cmd);

for my $v (qw(INSITE_PG_DSN INSITE_KAFKA_BOOTSTRAP)) {
    plan skip_all => "$v not set (run under scripts/test.sh)" unless $ENV{$v};
}
my $root = getcwd();
my $bin = $ENV{INSITE_GDPR_BIN} // "$root/build/bin/insite-gdpr";
$bin = "$root/$bin" unless $bin =~ m{^/};
plan skip_all => "$bin not built" unless -x $bin;

my $json = JSON::PP->new->utf8->canonical;
my $tmp = File::Temp::tempdir('insite-cerasure-XXXXXX', TMPDIR => 1, CLEANUP => 1);
sub slurp { local (@ARGV, $/) = @_; my $d = <>; $d // '' }
sub spew { Test::Nginx::Util::spew(@_) }
sub wait_for {
    my ($secs, $cond) = @_;
    my $deadline = time + $secs;
    while (time < $deadline) { return 1 if $cond->(); sleep 0.1 }
    return $cond->();
}

my $cl = Insite::RedisCluster->new(masters => 3, replicas => 0);
my $ranges = $cl->slot_ranges;
my $master_of = sub { $cl->master_of_slot($cl->slot_of($_[0]), undef, $ranges) };
my $port_of = sub { $master_of->($_[0])->port };

my @plain = (['prefs', 't906:{prefs:%u}'], ['watch', 't906:{watch:%u}'], ['session', 't906:{session:%u}']);
my $NHIST = 24;
sub keys_of {
    my ($u) = @_;
    return ((map { (my $k = $_->[1]) =~ s/%u/$u/; $k } @plain), "insite:consent:{$u}");
}
sub hist_of { my ($u) = @_; map { "t906:hist:$u:$_" } 1 .. $NHIST }

# A: the three exact keys on three masters, the family on all three
my $A;
for my $i (1 .. 10000) {
    my $u = "ea$$-$i";
    my %exact = map { $port_of->($_) => 1 } (keys_of($u))[0 .. 2];
    my %fam = map { $port_of->($_) => 1 } hist_of($u);
    if (keys %exact == 3 && keys %fam == 3) { $A = $u; last }
}
# B: its consent hash on another master than a single marker key would be
my $B;
for my $i (1 .. 10000) {
    my $u = "eb$$-$i";
    if ($port_of->("insite:consent:{$u}") != $port_of->('insite:consent:synced')) { $B = $u; last }
}
ok($A && $B, "users: $A (keys on every master), $B");

# C, erased during the reshard: like A, with a family key on the middle
# master (held migrating to the last one) and at least two on the last (one
# moved, with its slot, to the first master mid-walk).  The job walks the
# masters in the order of their lowest slot.
my %lowest;
for (@$ranges) { $lowest{ $_->[2] } = $_->[0] if ($lowest{ $_->[2] } // 16384) > $_->[0] }
my @walk = sort { $lowest{$a} <=> $lowest{$b} } keys %lowest;
my $C;
for my $i (1 .. 10000) {
    my $u = "ec$$-$i";
    my %exact = map { $port_of->($_) => 1 } (keys_of($u))[0 .. 2];
    my %fam;
    push @{ $fam{ $port_of->($_) } }, $_ for hist_of($u);
    if (keys %exact == 3 && keys %fam == 3 && @{ $fam{ $walk[2] } } >= 2) { $C = $u; last }
}
ok($C && @walk == 3, "user $C: keys on every master, walked in the order @walk");

spew("$tmp/map.json", $json->encode({
    version => 1, databases => { insite => '' },
    postgresql => [ { name => 'consents', database => 'insite', table => 'user_consents',
                      user_column => 'user_id', action => 'delete' } ],
    redis => [ { name => 'consent_state', key => 'insite:consent:{%u}' },
               (map { { name => $_->[0], key => $_->[1] } } @plain),
               { name => 'history', match => 't906:hist:%u:*' } ],
}));
spew("$tmp/psn.key", "0123456789abcdef0123456789abcdef");
run_cmd(10, 'openssl', 'genpkey', '-algorithm', 'ed25519', '-out', "$tmp/sign.pem");

my $api = free_port();
my %env = (
    INSITE_PG_DSN => $ENV{INSITE_PG_DSN}, INSITE_PG_MIGRATIONS_DIR => "$root/workers/migrations",
    INSITE_REDIS_CLUSTER => '127.0.0.1:' . ($cl->nodes)[0]->port,
    INSITE_REDIS_COMMAND_TIMEOUT => '500ms', INSITE_REDIS_CONNECT_TIMEOUT => '300ms',
    INSITE_GDPR_HTTP_PORT => $api, INSITE_GDPR_SYNC_INTERVAL => '100ms',
    INSITE_GDPR_CONSENT_TYPES => 'analytics=2026-01',
    INSITE_GDPR_DATA_MAP => "$tmp/map.json", INSITE_GDPR_PSEUDONYM_KEY => "$tmp/psn.key",
    INSITE_GDPR_SIGNING_KEY => "$tmp/sign.pem", INSITE_KAFKA_BOOTSTRAP => $ENV{INSITE_KAFKA_BOOTSTRAP},
    INSITE_KAFKA_SPOOL_DIR => "$tmp/spool", INSITE_GDPR_TEST_CRASH_FILE => "$tmp/hook",
);
my $log = "$tmp/gdpr.log";
my $pid = Insite::Services::spawn($bin, \%env, $log);
END { kill 'TERM', $pid if $pid }
ok(wait_port($api, 20), 'insite-gdpr listens') or diag(slurp($log));

sub call {
    my ($who, $method, $path, $body) = @_;
    my $r = http_request($api, $method, $path, headers => { 'X-User-Id' => $who },
                         defined $body ? (body => $body) : (), timeout => 10);
    $r->{json} = eval { $json->decode($r->{body}) } // {};
    return $r;
}

# ---- the data: consent through the API, the other keys with redis-cli -c
for my $u ($A, $B, $C) {
    my $r = call($u, 'POST', '/api/v1/gdpr/consents', '{"consent_type":"analytics","granted":true}');
    ok($r->{json}{enforced_at_edge}, "$u: consent granted, in Redis") or diag($r->{body}, slurp($log));
    for my $k ((keys_of($u))[0 .. 2], hist_of($u)) {
        is($cl->cli('SET', $k, 'x'), 'OK', "SET $k") or last;
    }
}
# every key of a user, from each master's own view (no redirects)
sub on_masters {
    my ($u) = @_;
    my %by;
    for my $m ($cl->masters) {
        my $out = $m->cli("--scan", "--pattern", "*[:{]${u}[:}]*") // "";
        $by{ $m->port } = [ sort grep { length } split /\n/, $out ];
    }
    return \%by;
}
my $before = on_masters($A);
is(scalar(grep { @{ $before->{$_} } } keys %$before), 3, "$A has keys on all 3 masters");
is(scalar(map { @$_ } values %$before), 4 + $NHIST, "$A: 4 exact keys and $NHIST of the family");
my $others = on_masters($B);

# ---- export: the keys seen through the cluster (match: every master)
my $r = call($A, 'POST', '/api/v1/gdpr/export');
is($r->{status}, 202, 'export requested') or diag($r->{body});
my $eid = $r->{json}{request_id};
ok(wait_for(20, sub { ($r = call($A, 'GET', "/api/v1/gdpr/export/$eid"))->{json}{redis} }), 'export ready') or diag($r->{body}, slurp($log));
is_deeply({ map { $_ => $r->{json}{redis}{$_}{exists} ? 1 : 0 } keys %{ $r->{json}{redis} || {} } },
          { consent_state => 1, prefs => 1, watch => 1, session => 1, history => 1 },
          'export: every Redis target found');

# ---- erasure
$r = call($A, 'POST', '/api/v1/gdpr/delete', '{"confirmation":"DELETE_MY_DATA"}');
is($r->{status}, 202, 'erasure requested') or diag($r->{body});
my $id = $r->{json}{request_id};
ok(wait_for(30, sub { ($r = call($A, 'GET', "/api/v1/gdpr/deletion-status/$id"))->{json}{status} eq 'completed' }),
   'erasure completed') or diag($r->{body}, slurp($log));
my %rows = map { $_->{target} => $_->{rows} } @{ $r->{json}{targets} || [] };
is_deeply([ @rows{qw(redis:consent_state redis:prefs redis:watch redis:session redis:history)} ],
          [1, 1, 1, 1, $NHIST], "counted before the action: 1 per exact key, $NHIST in the family");

my $after = on_masters($A);
is_deeply($after, { map { $_ => [] } keys %$after }, "no key of $A left on any master");
for my $k (keys_of($A)) {
    is($cl->cli('EXISTS', $k), '0', "$k: gone (redis-cli -c)");
}
is_deeply(on_masters($B), $others, "$B\'s keys untouched, on every master");
unlike(slurp($log), qr/erasure: .*redis/i, 'the job met no Redis failure');

# ---- erasure of C during a live reshard
sub all_keys { my ($u) = @_; [ sort map { @$_ } values %{ on_masters($u) } ] }
my $others_all = all_keys($B);
my $before_c = all_keys($C);
is(scalar(@$before_c), 4 + $NHIST, "$C: 4 exact keys and $NHIST of the family");
my $node = sub { $cl->node_by_port($_[0]) };
# held mid-migration for the whole job: the slot of C's "watch" key, to the
# next master, and the slot of a family key on the middle master, to the
# last; both keys moved, so the source answers ASK for them
my $watch = (keys_of($C))[1];
my $s1 = $cl->slot_of($watch);
my $s1_from = $port_of->($watch);
my $s1_to = (grep { $_ != $s1_from } @walk)[0];
my ($fam2) = grep { $port_of->($_) == $walk[1] } hist_of($C);
my $s2 = $cl->slot_of($fam2);
$cl->begin_migration($s1, $node->($s1_to), $watch);
$cl->begin_migration($s2, $node->($walk[2]), $fam2);
like($node->($s1_from)->cli('EXISTS', $watch), qr/^ASK $s1 /, "$watch: moved mid-migration, its old owner answers ASK");
like($node->($walk[1])->cli('EXISTS', $fam2), qr/^ASK $s2 /, "$fam2: moved mid-migration, its old owner answers ASK");
# moved while the job is held after its SCAN of the first master: the
# slots of (up to 3 of) C's family keys on the last master
my @late = grep { $port_of->($_) == $walk[2] && $cl->slot_of($_) != $s2 && $cl->slot_of($_) != $s1 } hist_of($C);
splice @late, 3;
my %late_slots = map { $cl->slot_of($_) => 1 } @late;
# every family key of C in those slots moves (more than @late when two
# share a slot): what the verification scan finds
my $nmoved = grep { $port_of->($_) == $walk[2] && $late_slots{ $cl->slot_of($_) } } hist_of($C);
ok(@late >= 1, scalar(@late) . " family key(s) of $C in " . scalar(keys %late_slots) . " slot(s) of the last master, to move mid-walk");

Test::Nginx::Util::spew("$tmp/hook", "pause:walked:redis:history\n");
my $log_at = -s $log;
$r = call($C, 'POST', '/api/v1/gdpr/delete', '{"confirmation":"DELETE_MY_DATA"}');
is($r->{status}, 202, "$C: erasure requested") or diag($r->{body});
my $cid = $r->{json}{request_id};
my $tail = sub { my $l = slurp($log); substr($l, $log_at < length $l ? $log_at : length $l) };
ok(wait_for(20, sub { $tail->() =~ /test hook: pausing 4s at walked:redis:history/ }),
   'the job reached the end of its first master\'s SCAN') or diag($tail->());
kill 'STOP', $pid;         # held there until the slots are moved
my $moved = $cl->move_slots($node->($walk[0]), sort { $a <=> $b } keys %late_slots);
kill 'CONT', $pid;
ok($moved, 'meanwhile those slots moved, keys and all, to the first master (already walked)');
$ranges = $cl->slot_ranges;
is(scalar(grep { $port_of->($_) == $walk[0] } @late), scalar(@late), '... where the map now puts them');
ok(wait_for(30, sub { ($r = call($C, 'GET', "/api/v1/gdpr/deletion-status/$cid"))->{json}{status} eq 'completed' }),
   "$C: erasure completed") or diag($r->{body}, $tail->());
like($tail->(), qr/erasure \Q$cid\E: verification found $nmoved row\(s\) in redis:history: repeating it/,
     'the walk missed the moved keys; the verification scan found them and re-opened the step');
%rows = map { $_->{target} => $_->{rows} } @{ $r->{json}{targets} || [] };
is_deeply([ @rows{qw(redis:consent_state redis:prefs redis:watch redis:session redis:history)} ],
          [1, 1, 1, 1, $NHIST], "$C: counted once, before the action: 1 per exact key, $NHIST in the family");
ok($cl->end_migration($s1, $node->($s1_to)) && $cl->end_migration($s2, $node->($walk[2])),
   'the held migrations ended');
$ranges = $cl->slot_ranges;
is_deeply(all_keys($C), [], "no key of $C left on any master");
is_deeply(all_keys($B), $others_all, "every key of $B still there");
unlike($tail->(), qr/erasure: .*redis/i, 'the job met no Redis failure');

# ---- the consent sync marker, one per master
sub markers {
    return { map { $_->port => scalar(grep { length } split /\n/,
                                      $_->cli('--scan', '--pattern', 'insite:consent:synced:*') // '') }
             $cl->masters };
}
ok(wait_for(10, sub { !grep { !$_ } values %{ markers() } }), 'a sync marker on every master')
    or diag(explain(markers()));
my $mb = $master_of->("insite:consent:{$B}");
is($mb->cli('HGET', "insite:consent:{$B}", 'analytics'), '2026-01', "$B\'s consent hash on its master");
$mb->restart;                                  # no persistence: empty, its slots kept
ok($cl->wait_ok(30), 'the cluster is ok again with the master restarted empty');
ok(wait_for(15, sub { ($mb->cli('HGET', "insite:consent:{$B}", 'analytics') // '') eq '2026-01' }),
   "$B\'s consent hash republished on the restarted master") or diag(slurp($log));
like(slurp($log), qr/127\.0\.0\.1:${\ $mb->port} has no consent state/, 'the worker named the empty master');
ok(wait_for(10, sub { !grep { !$_ } values %{ markers() } }), 'a sync marker on every master again');

kill 'TERM', $pid;
waitpid($pid, 0);
$pid = undef;
done_testing();
