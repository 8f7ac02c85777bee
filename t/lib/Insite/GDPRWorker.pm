package Insite::GDPRWorker;

# insite-gdpr for the retention, report and incident tests (t/71x): a
# PostgreSQL cluster of the test's own (scripts/services.sh start pg, in a
# temp run dir) with a "backend" database, the shipped data map pointed at
# it, keys, and the worker's environment.

use strict;
use warnings;

use Cwd qw(getcwd);
use Exporter 'import';
use File::Temp ();
use JSON::PP ();
use Time::HiRes qw(time sleep);

use Insite::Services qw(run_cmd);

our @EXPORT_OK = qw(setup psql wait_for slurp spew);

my $json = JSON::PP->new->utf8->canonical;

sub slurp { local (@ARGV, $/) = @_; my $d = <>; $d // '' }
sub spew { my ($f, $d) = @_; open my $fh, '>', $f or die "$f: $!"; print $fh $d; close $fh }

sub wait_for {
    my ($secs, $cond) = @_;
    my $deadline = time + $secs;
    while (time < $deadline) { return 1 if $cond->(); sleep 0.1 }
    return $cond->();
}

sub psql {
    my ($dsn, $sql) = @_;
    my ($o, $r) = run_cmd(60, 'psql', $dsn, '-X', '-qtA', '-v', 'ON_ERROR_STOP=1', '-c', $sql);
    die "psql: $o" if $r;
    chomp $o;
    return $o;
}

# Returns { root, bin, tmp, dsn, bdsn, map, env => {...} }; the cluster stops
# at exit.  %opt: map => sub { $map } edits the data map before it is written.
sub setup {
    my (%opt) = @_;
    my $root = getcwd();
    my $bin = $ENV{INSITE_GDPR_BIN} // "$root/build/bin/insite-gdpr";
    $bin = "$root/$bin" unless $bin =~ m{^/};
    my $tmp = File::Temp::tempdir('insite-gdpr-t-XXXXXX', TMPDIR => 1, CLEANUP => 1);
    chmod 0755, $tmp;
    mkdir "$tmp/run";
    local $ENV{INSITE_RUN_DIR} = "$tmp/run";
    my ($out, $rc) = run_cmd(120, "$root/scripts/services.sh", 'start', 'pg');
    die "own PostgreSQL did not start:\n$out" if $rc;
    push @Insite::GDPRWorker::clusters, "$tmp/run";
    my %pgenv = slurp("$tmp/run/pg.env") =~ /^(\w+)=(.*)$/mg;
    my $dsn = $pgenv{INSITE_PG_DSN};
    (my $bdsn = $dsn) =~ s{/insite$}{/backend};
    run_cmd(20, 'psql', '-X', '-h', '127.0.0.1', '-p', $pgenv{INSITE_PG_PORT}, '-U', 'postgres', '-d', 'postgres',
            '-qc', 'CREATE DATABASE backend OWNER insite');
    my $map = $json->decode(slurp("$root/workers/gdpr/datamap.json"));
    $map->{databases}{backend} = $bdsn;
    $opt{map}->($map) if $opt{map};
    spew("$tmp/map.json", $json->encode($map));
    spew("$tmp/psn.key", "0123456789abcdef0123456789abcdef");
    run_cmd(10, 'openssl', 'genpkey', '-algorithm', 'ed25519', '-out', "$tmp/sign.pem");
    run_cmd(10, 'openssl', 'pkey', '-in', "$tmp/sign.pem", '-pubout', '-out', "$tmp/sign.pub");
    my %env = (
        INSITE_PG_DSN => $dsn, INSITE_PG_MIGRATIONS_DIR => "$root/workers/migrations",
        INSITE_GDPR_DATA_MAP => "$tmp/map.json", INSITE_GDPR_PSEUDONYM_KEY => "$tmp/psn.key",
        INSITE_GDPR_SIGNING_KEY => "$tmp/sign.pem", INSITE_GDPR_RETENTION_TIME => '',
        INSITE_KAFKA_BOOTSTRAP => $ENV{INSITE_KAFKA_BOOTSTRAP} // '127.0.0.1:9',
        INSITE_KAFKA_SPOOL_DIR => "$tmp/spool", INSITE_REDIS_PORT => 9,
    );
    return { root => $root, bin => $bin, tmp => $tmp, dsn => $dsn, bdsn => $bdsn, pgport => $pgenv{INSITE_PG_PORT},
             env => \%env };
}

END {
    local $?;
    for my $run (@Insite::GDPRWorker::clusters) {
        local $ENV{INSITE_RUN_DIR} = $run;
        run_cmd(60, getcwd() . '/scripts/services.sh', 'stop', 'pg');
    }
}

# insite-gdpr --retention-now [--dry-run] with the env (+ %extra): (stdout
# JSON decoded or undef, exit code, stderr text)
sub retention_now {
    my ($w, $dry, %extra) = @_;
    my %env = (%{ $w->{env} }, %extra);
    my $cmd = join ' ', map { "$_='$env{$_}'" } sort keys %env;
    my $args = $dry ? '--retention-now --dry-run' : '--retention-now';
    my $out = `env $cmd $w->{bin} $args 2>$w->{tmp}/now.err`;
    my $rc = $? >> 8;
    return (eval { $json->decode($out) }, $rc, slurp("$w->{tmp}/now.err"));
}

1;
