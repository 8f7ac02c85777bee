# Retention under fire: a run killed -9 mid-way leaves a log row that says
# exactly what went (rows_affected moves in each batch's transaction) and
# the next run resumes it (same row, same cutoff) and deletes exactly the
# rest; a concurrent writer (lock_timeout 1s, so a blocked insert is an
# error) keeps inserting into the same tables without an error; a policy
# whose advisory lock another instance holds is skipped, untouched.

use strict;
use warnings;
use lib 't/lib';

use POSIX ();
use Test::More;
use Time::HiRes qw(time sleep);

use Insite::GDPRWorker qw(psql wait_for slurp spew);
use Insite::Services qw(run_cmd);

my $w = Insite::GDPRWorker::setup();
plan skip_all => "$w->{bin} not built" unless -x $w->{bin};
my $dsn = $w->{dsn};

Insite::GDPRWorker::retention_now($w, 1);          # migrations
# only the two bulky policies: the test is about them
psql($dsn, "UPDATE gdpr_retention_policies SET is_active = data_type IN ('price_history', 'social_posts')");
my $N = 6000;
psql($dsn, "INSERT INTO stock_prices (symbol, ts, interval, source) SELECT 'AAPL', now() - interval '800 days' - g * interval '1 minute', '1m', 'old' FROM generate_series(1, $N) g;"
     . " INSERT INTO stock_prices (symbol, ts, interval, source) SELECT 'AAPL', now() - g * interval '1 minute', '1m', 'new' FROM generate_series(1, 500) g;"
     . " INSERT INTO social_posts (source, source_id, author, created_at) SELECT 'reddit', 'old-' || g, 'a', now() - interval '200 days' FROM generate_series(1, 1000) g");

# ---- the concurrent writer: one psql session inserting fresh rows
my $W = 3000;
my $sql = "SET lock_timeout = '1s';\n" . join '', map {
    "INSERT INTO stock_prices (symbol, ts, interval, source) VALUES ('MSFT', now() + interval '$_ second', '1m', 'writer');\n"
    . "INSERT INTO social_posts (source, source_id, author, created_at) VALUES ('reddit', 'w-$_', 'w', now());\n"
    . ($_ % 10 ? '' : "SELECT pg_sleep(0.01);\n")
} 1 .. $W;
spew("$w->{tmp}/writer.sql", $sql);
my $writer = fork // die;
if (!$writer) {
    open STDOUT, '>', "$w->{tmp}/writer.out"; open STDERR, '>&', \*STDOUT;
    exec 'psql', $dsn, '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-f', "$w->{tmp}/writer.sql"
        or POSIX::_exit(127);
}

# ---- a run killed -9 after a few batches
my %env = (%{ $w->{env} }, INSITE_GDPR_RETENTION_BATCH => 200, INSITE_GDPR_RETENTION_PAUSE => '50ms');
my $pid = fork // die;
if (!$pid) {
    $ENV{$_} = $env{$_} for keys %env;
    open STDOUT, '>', "$w->{tmp}/run1.out"; open STDERR, '>', "$w->{tmp}/run1.log";
    exec $w->{bin}, '--retention-now'
        or POSIX::_exit(127);
}
ok(wait_for(60, sub { (psql($dsn, "SELECT coalesce(max(rows_affected), 0) FROM gdpr_audit_log WHERE data_type = 'price_history'")) >= 1000 }),
   'the run is under way') or diag(slurp("$w->{tmp}/run1.log"));
is(waitpid($writer, POSIX::WNOHANG()), 0, 'the writer is writing meanwhile');
kill 'KILL', $pid;
waitpid $pid, 0;
is($? & 127, 9, 'killed -9 mid-run');
my ($logged, $status, $cutoff1) = split /\|/, psql($dsn, "SELECT rows_affected, status, cutoff FROM gdpr_audit_log WHERE data_type = 'price_history'");
my $gone = $N - psql($dsn, "SELECT count(*) FROM stock_prices WHERE source = 'old'");
is($status, 'running', 'the log row is left running');
ok($gone > 0 && $gone < $N, "part of the rows went ($gone of $N)");
is($logged, $gone, 'rows_affected is exactly what went (same transaction as each batch)');

# ---- the rerun resumes it
my ($sum, $rc) = Insite::GDPRWorker::retention_now($w, 0, INSITE_GDPR_RETENTION_BATCH => 200, INSITE_GDPR_RETENTION_PAUSE => '50ms');
is($rc, 0, 'rerun exits 0') or diag(slurp("$w->{tmp}/now.err"));
my %by = map { $_->{data_type} => $_ } @{ $sum->{policies} // [] };
ok($by{price_history}{resumed}, 'price_history: the interrupted run resumed');
is(psql($dsn, "SELECT count(*) || '|' || max(rows_affected) || '|' || min(status) || '|' || max(cutoff) FROM gdpr_audit_log WHERE data_type = 'price_history'"),
   "1|$N|completed|$cutoff1", 'the same log row completes with every row counted once, same cutoff');
is(psql($dsn, "SELECT count(*) FROM stock_prices WHERE source = 'old'"), 0, 'no expired bar left');
is(psql($dsn, "SELECT count(*) FROM stock_prices WHERE source = 'new'"), 500, 'every young bar kept');
is(psql($dsn, "SELECT count(*) FROM social_posts WHERE source_id LIKE 'old-%'"), 0, 'social posts: expired gone');

# ---- the writer
ok(wait_for(120, sub { waitpid($writer, POSIX::WNOHANG()) == $writer }), 'the writer finished');
is($? >> 8, 0, 'the writer met no error (no lock wait over 1s, no conflict)') or diag(slurp("$w->{tmp}/writer.out"));
is(psql($dsn, "SELECT count(*) FROM stock_prices WHERE source = 'writer'"), $W, "all $W bars it wrote are there");
is(psql($dsn, "SELECT count(*) FROM social_posts WHERE author = 'w'"), $W, "all $W posts it wrote are there");

# ---- another instance holds price_history's lock: this one skips it
psql($dsn, "INSERT INTO stock_prices (symbol, ts, interval, source) SELECT 'AAPL', now() - interval '800 days' - g * interval '1 minute', '1m', 'old' FROM generate_series(1, 10) g");
my $holder = fork // die;
if (!$holder) {
    open STDOUT, '>', '/dev/null';
    exec 'psql', $dsn, '-X', '-q', '-c', "SELECT pg_advisory_lock(hashtext('insite-gdpr-retention'), hashtext('price_history'))",
        '-c', 'SELECT pg_sleep(30)'
        or POSIX::_exit(127);
}
ok(wait_for(20, sub { psql($dsn, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted") > 0 }), 'another session holds the lock');
($sum, $rc) = Insite::GDPRWorker::retention_now($w, 0);
%by = map { $_->{data_type} => $_ } @{ $sum->{policies} // [] };
is($by{price_history}{status}, 'skipped', 'price_history skipped while another instance runs it');
is($by{social_posts}{status}, 'completed', 'the other policy ran');
is(psql($dsn, "SELECT count(*) FROM stock_prices WHERE source = 'old'"), 10, 'its rows untouched');
kill 'TERM', $holder; waitpid $holder, 0;
psql($dsn, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(30)%' AND pid <> pg_backend_pid()");

# ---- SIGTERM stops a --retention-now run between batches: exit 1, the row
# stays 'running' with exactly what went, and the next run finishes it
psql($dsn, "INSERT INTO stock_prices (symbol, ts, interval, source) SELECT 'AAPL', now() - interval '800 days' - g * interval '1 minute', '1m', 'old' FROM generate_series(1, $N) g");
my $old = psql($dsn, "SELECT count(*) FROM stock_prices WHERE source = 'old'");   # with the 10 the lock kept
my $last = "SELECT rows_affected || '|' || status FROM gdpr_audit_log WHERE data_type = 'price_history' ORDER BY id DESC LIMIT 1";
%env = (%{ $w->{env} }, INSITE_GDPR_RETENTION_BATCH => 200, INSITE_GDPR_RETENTION_PAUSE => '200ms');
$pid = fork // die;
if (!$pid) {
    $ENV{$_} = $env{$_} for keys %env;
    open STDOUT, '>', "$w->{tmp}/run2.out"; open STDERR, '>', "$w->{tmp}/run2.log";
    exec $w->{bin}, '--retention-now'
        or POSIX::_exit(127);
}
ok(wait_for(60, sub { psql($dsn, $last) =~ /^(\d+)\|running$/ && $1 >= 400 }), 'a second run is under way')
    or diag(slurp("$w->{tmp}/run2.log"));
kill 'TERM', $pid;
ok(wait_for(60, sub { waitpid($pid, POSIX::WNOHANG()) == $pid }), 'SIGTERM: the run exits (between batches)')
    or kill 'KILL', $pid;
is($? >> 8, 1, 'exit status 1: the run did not finish');
like(slurp("$w->{tmp}/run2.log"), qr/retention: stopping between batches \(signal\)/, 'the signal is logged');
($logged, $status) = split /\|/, psql($dsn, $last);
$gone = $old - psql($dsn, "SELECT count(*) FROM stock_prices WHERE source = 'old'");
is($status, 'running', 'SIGTERM: the log row is left running, to be resumed');
ok($gone > 0 && $gone < $old, "SIGTERM: part of the rows went ($gone of $old)");
is($logged, $gone, 'SIGTERM: rows_affected is exactly what went');
($sum, $rc) = Insite::GDPRWorker::retention_now($w, 0);
is($rc, 0, 'the run after SIGTERM exits 0');
is(psql($dsn, $last), "$old|completed", 'and completes the same row with every row counted once');
is(psql($dsn, "SELECT count(*) FROM stock_prices WHERE source = 'old'"), 0, 'no expired bar left');

done_testing();
