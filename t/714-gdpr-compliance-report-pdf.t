# The compliance report as PDF: the same known data as t/713; every figure
# of the JSON is found in the PDF's text (pdftotext -layout) on its row,
# the footer carries the JSON's SHA-256 and the key fingerprint on every
# page with "Page N of M", fonts are embedded, and rendered pages are not
# blank (pdftoppm: dark pixels on the title page, blue chart bars on the
# data processing page).

use strict;
use warnings;
use lib 't/lib';

use JSON::PP ();
use Test::More;

use Insite::GDPRWorker qw(psql slurp spew);
use Insite::Services qw(http_request run_cmd);

plan skip_all => 'INSITE_KAFKA_BOOTSTRAP not set (run under scripts/test.sh)' unless $ENV{INSITE_KAFKA_BOOTSTRAP};
plan skip_all => 'pdftotext not installed (scripts/deps.sh: poppler-utils)' unless -x '/usr/bin/pdftotext';
my $w = Insite::GDPRWorker::setup();
plan skip_all => "$w->{bin} not built" unless -x $w->{bin};
my $json = JSON::PP->new->utf8->canonical;
my $tmp = $w->{tmp};

my $api = Insite::GDPRWorker::report_api($w);
my %op = ('X-User-Id' => 'dpo', 'X-User-Scopes' => 'gdpr:admin');
my $q = '/api/v1/gdpr/compliance-report?start_date=2025-03-01&end_date=2025-03-31';

my $j = $json->decode(http_request($api, 'GET', $q, headers => \%op, timeout => 30)->{body});
my $r = http_request($api, 'GET', "$q&format=pdf", headers => \%op, timeout => 30);
is($r->{status}, 200, 'PDF: 200');
like($r->{headers}{'content-type'} // '', qr{^application/pdf}, 'Content-Type application/pdf');
like($r->{body}, qr/^%PDF-1\.\d/, 'a PDF document');
is($r->{headers}{'x-report-sha256'}, $j->{integrity}{sha256}, 'X-Report-SHA256 = the JSON\'s sha256');
is(http_request($api, 'GET', "$q&format=pdf", headers => { 'X-User-Id' => 'u1' }, timeout => 30)->{status}, 403,
   'PDF: a user without gdpr:admin gets 403');
spew("$tmp/r.pdf", $r->{body});

my ($text, $rc) = run_cmd(30, 'pdftotext', '-layout', "$tmp/r.pdf", '-');
is($rc, 0, 'pdftotext reads it');
my ($info) = run_cmd(10, 'pdfinfo', "$tmp/r.pdf");
my ($pages) = $info =~ /^Pages:\s+(\d+)/m;
ok($pages && $pages >= 3, "$pages pages");

# every figure of the JSON, on its row
sub row { my ($label, @v) = @_; my $re = join '\s+', quotemeta($label), map { quotemeta } @v; like($text, qr/$re/, "PDF: $label @v") }
sub pct { defined $_[0] ? sprintf('%.2f %%', $_[0]) : 'n/a' }
my $p = $j->{data_processing};
row('Users with recorded accesses', $p->{users});
row('Operations', $p->{operations});
row("Operations: $_", $p->{operations_by_access_type}{$_}) for qw(read write delete export other);
my $d = $j->{deletions};
row('Erasure requests', $d->{requests});
row('Erasures completed', $d->{completed});
row('Erasures failed', $d->{failed});
row('Erasures cancelled', $d->{cancelled});
row('Erasures open', $d->{open});
row('Rows erased or anonymized', $d->{rows_deleted});
for my $t (@{ $j->{consents}{types} }) {
    row($t->{consent_type}, $t->{granted}, $t->{withheld}, pct($t->{grant_rate_pct}), $t->{grants_in_period}, $t->{withdrawals_in_period});
}
row('Consent changes in period:', $j->{consents}{changes_in_period});
my $e = $j->{data_portability};
row('Export requests', $e->{exports});
row('Exports ready', $e->{ready});
row('Exports failed', $e->{failed});
row('Exports expired', $e->{expired});
row('Exports pending', $e->{pending});
row('Average completion (seconds)', $e->{average_completion_seconds});
row('Incidents', $j->{security_incidents}{total});
row("Incidents: $_", $j->{security_incidents}{by_severity}{$_}) for qw(LOW MEDIUM HIGH CRITICAL);
my $a = $j->{audit};
row('Audit entries', $a->{entries});
row('Audit users', $a->{users});
row('Journal chains', $a->{chains});
row('Expected records', $a->{expected_records});
row('Shipped records', $a->{shipped_records});
row('Missing records', $a->{missing_records});
row('Audit completeness', pct($a->{completeness_pct}));
row('Checkpoints', $a->{checkpoints}{total});
row('Checkpoints verified', "$a->{checkpoints}{verified} of $a->{checkpoints}{total}");
row($_->{data_type}, @{$_}{qw(runs completed failed rows_deleted)}) for @{ $j->{retention}{by_data_type} };
row('Total', @{ $j->{retention} }{qw(runs completed failed rows_deleted)});
is($a->{completeness_pct}, 94.74, '(the JSON figure the PDF was compared with: 94.74)');

# title page, footer on every page
like($text, qr/GDPR Compliance Report/, 'title');
like($text, qr/Reporting period: 2025-03-01 to 2025-03-31/, 'period on the title page');
like($text, qr/Generated: \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z/, 'generation time on the title page');
my @pg = split /\f/, $text;
is(scalar(grep { /Report SHA-256: \Q$j->{integrity}{sha256}\E/ } @pg), $pages, 'every page: the JSON\'s SHA-256');
is(scalar(grep { /Signing key fingerprint \(SHA-256\): \Q$j->{integrity}{signing_key_fingerprint}\E/ } @pg), $pages,
   'every page: the signing key fingerprint');
is(scalar(grep { my $n = $_ + 1; $pg[$_] =~ /Page $n of $pages/ } 0 .. $pages - 1), $pages, 'every page: Page N of M');
like($text, qr/Chart 1: operations per day/, 'chart 1');
like($text, qr/Chart 2: consents per type/, 'chart 2');

my ($fonts) = run_cmd(10, 'pdffonts', "$tmp/r.pdf");
my @f = grep { /TrueType|Type 1|CID/ } split /\n/, $fonts;
ok(@f >= 1, scalar(@f) . ' font(s)');
is(scalar(grep { (split /\s+/)[-5] eq 'yes' } @f), scalar(@f), 'every font embedded') or diag($fonts);

# pixels: pdftoppm to PPM, read in Perl
sub ppm {
    my ($page) = @_;
    run_cmd(30, 'pdftoppm', '-r', '40', '-f', $page, '-l', $page, "$tmp/r.pdf", "$tmp/p$page");
    my ($file) = glob "$tmp/p$page*.ppm";
    my $raw = slurp($file);
    my ($wd, $ht, $body) = $raw =~ /^P6\s+(\d+)\s+(\d+)\s+255\s(.*)$/s or return;
    my ($dark, $blue) = (0, 0);
    for (my $i = 0; $i + 2 < length $body; $i += 3) {
        my ($R, $G, $B) = unpack 'C3', substr($body, $i, 3);
        $dark++ if $R + $G + $B < 600;
        $blue++ if $B > $R + 80 && $B > 150;
    }
    return ($wd * $ht, $dark, $blue);
}
my ($n1, $dark1) = ppm(1);
ok($n1 && $dark1 > $n1 / 200, "title page is not blank ($dark1 of $n1 pixels not white)");
my ($n2, $dark2, $blue2) = ppm(2);
ok($blue2 > 50, "data processing page: chart bars drawn ($blue2 blue pixels)");

done_testing();
