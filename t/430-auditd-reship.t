# insite-auditd: a journal shipped again after its positions were lost
# stays exactly once.  The shipper COPYs a batch straight into
# gdpr_audit_trail; when some of its rows are there already (the COPY fails
# with unique_violation) it rolls back to a savepoint and ships the batch
# through the stage table and INSERT ... ON CONFLICT DO NOTHING
# (workers/auditd/ship.c, ship_rows).  Here: ship 400 records, stop,
# delete the source's positions, serve 10 more, restart: the 10 new rows
# arrive, the 400 old ones are not doubled, nothing is reported as an
# error.  400 rows are more than the 256 KB after which a batch starts
# streaming into its COPY while the rest is read, so the fallback also
# runs after a COPY that had already received rows.
#
# Needs INSITE_PG_DSN.  INSITE_AUDITD_BIN picks the binary.
use strict;
use warnings;
use lib 't/lib';

use Test::More;
use Time::HiRes qw(sleep);

use Insite::Auditd qw(slurp wait_for);

my $w = Insite::Auditd->new(name => 'reship', env => { INSITE_AUDITD_BATCH_SIZE => 1000 });
my ($source, $log) = @$w{qw(source log)};

my $N = 400;

$w->requests(1, $N);
$w->start;
ok(wait_for(60, sub { (eval { $w->rows } // 0) >= $N }), "$N rows shipped") or diag(slurp($log));
unlike(slurp($log), qr/rows already in gdpr_audit_trail/, 'first shipping: straight COPY');
$w->stop;

# the positions are lost: the whole journal will be read again
$w->psql("DELETE FROM gdpr_audit_positions WHERE source = '$source'");
$w->requests($N + 1, $N + 10);
my $from = $w->start;
ok(wait_for(60, sub { $w->rows >= $N + 10 }), 'the 10 new rows arrive') or diag(slurp($log));
ok(wait_for(15, sub { $w->psql("SELECT count(*) FROM gdpr_audit_positions WHERE source = '$source'") > 0 }),
   'positions stored again');
sleep 1;    # ~20 more passes at 50ms
$w->stop;
my $after = substr(slurp($log), $from);
like($after, qr/rows already in gdpr_audit_trail: this batch of \d+ goes through INSERT \.\.\. ON CONFLICT DO NOTHING/,
     'the batch with shipped rows took the idempotent path');
unlike($after, qr/postgresql: .*retrying/, 'no PostgreSQL error on the way');
is($w->rows, $N + 10, "exactly " . ($N + 10) . " rows: none of the $N doubled");
is($w->psql("SELECT count(DISTINCT id) FROM gdpr_audit_trail WHERE source = '$source'"), $N + 10,
   'distinct record ids');
is($w->psql("SELECT count(*) FROM gdpr_audit_trail WHERE source = '$source' AND path = '/data/x'"), $N + 10,
   'every row typed, as the journal says');
$w->finish;
done_testing();
