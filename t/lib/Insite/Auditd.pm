package Insite::Auditd;

# insite-auditd behind an nginx that journals /data/ (the shipper tests,
# t/421, t/430): the skip checks, a temp dir, a tag and a source of the
# test's own, the nginx, the worker's environment, and start/stop of the
# worker with its log in $a->{log}.
#
#   my $a = Insite::Auditd->new(name => 'pos', needs => ['INSITE_KAFKA_BOOTSTRAP'],
#                               env => { INSITE_AUDITD_BATCH_SIZE => 500 });
#   $a->requests(1, 20); my $from = $a->start; ...; $a->stop;

use strict;
use warnings;

use Cwd qw(getcwd);
use Exporter 'import';
use File::Temp ();
use Test::More;
use Time::HiRes qw(time sleep);

use Insite::Nginx;
use Insite::Services qw(free_port wait_port run_cmd);

our @EXPORT_OK = qw(slurp wait_for);

my @pids;
END { kill 'KILL', $_ for grep { $_ } map { $$_ } @pids }

sub slurp { return "" unless -e $_[0]; local (@ARGV, $/) = @_; my $d = <>; $d // "" }

sub wait_for {
    my ($secs, $cond) = @_;
    my $deadline = time + $secs;
    while (time < $deadline) { return 1 if $cond->(); sleep 0.1 }
    return $cond->();
}

# %o: name (temp dir and tag prefix), needs (more environment variables the
# test cannot run without), env (worker settings added or overridden).
# Skips the whole test (plan skip_all) when something is missing.
sub new {
    my ($class, %o) = @_;
    for my $v ('TEST_NGINX_LOAD_MODULES', 'INSITE_PG_DSN', @{ $o{needs} // [] }) {
        plan skip_all => "$v not set (run under scripts/test.sh or source build/run/services.env)"
            unless $ENV{$v};
    }
    my $root = getcwd();
    my $bin = $ENV{INSITE_AUDITD_BIN} // "$root/build/bin/insite-auditd";
    $bin = "$root/$bin" unless $bin =~ m{^/};
    plan skip_all => "$bin not built" unless -x $bin;

    my $self = bless { root => $root, bin => $bin, dsn => $ENV{INSITE_PG_DSN} }, $class;
    my $tmp = $self->{tmp} = File::Temp::tempdir("insite-auditd-$o{name}-XXXXXX", TMPDIR => 1, CLEANUP => 1);
    chmod 0755, $tmp;
    my $tag = $self->{tag} = "$o{name}$$-" . int(time);
    $self->{source} = "edge-$tag";
    my $j = $self->{journal} = "$tmp/journal";
    Test::Nginx::Util::spew("$tmp/ok.txt", "ok\n");
    $self->{nginx} = Insite::Nginx->new(http => "    insite_gdpr_journal $j;\n", server => <<"CONF");
        location /data/ { insite_gdpr_audit on; insite_gdpr_audit_user \$http_x_user;
                          insite_gdpr_data_type "$tag"; root $tmp; rewrite ^ /ok.txt break; }
CONF
    $self->{api} = free_port();
    $self->{env} = {
        INSITE_PG_DSN => $self->{dsn}, INSITE_PG_MIGRATIONS_DIR => "$root/workers/migrations",
        INSITE_AUDITD_JOURNAL_DIR => $j, INSITE_AUDITD_SOURCE => $self->{source},
        INSITE_AUDITD_HTTP_PORT => $self->{api}, INSITE_AUDITD_POLL_INTERVAL => '50ms',
        INSITE_AUDITD_DIGEST_DIR => "$tmp/digests",
        %{ $o{env} // {} },
    };
    $self->{log} = "$tmp/auditd.log";
    push @pids, \$self->{pid};
    return $self;
}

sub psql {
    my ($self, $sql) = @_;
    my ($o, $r) = run_cmd(20, 'psql', $self->{dsn}, '-X', '-qtA', '-v', 'ON_ERROR_STOP=1', '-c', $sql);
    die "psql: $o" if $r;
    chomp $o;
    $o;
}

# rows this test's source shipped
sub rows {
    my ($self) = @_;
    return $self->psql("SELECT count(*) FROM gdpr_audit_trail WHERE source = '$self->{source}'");
}

# GET /data/x?i=N for N in from..to, each as user uN
sub requests {
    my ($self, $from, $to) = @_;
    for my $i ($from .. $to) {
        my $r = $self->{nginx}->get("/data/x?i=$i", headers => { 'X-User' => "u$i" });
        die "request $i: $r->{status}\n" unless ($r->{status} // 0) == 200;
    }
}

# Starts the worker; returns where its log stood before (what this run
# writes is substr(slurp($a->{log}), $from)).
sub start {
    my ($self) = @_;
    my $from = length slurp($self->{log});
    $self->{pid} = Insite::Services::spawn($self->{bin}, $self->{env}, $self->{log});
    ok(wait_port($self->{api}, 15), "insite-auditd API listens (pid $self->{pid})")
        or diag(slurp($self->{log}));
    return $from;
}

sub stop {
    my ($self) = @_;
    kill 'TERM', $self->{pid};
    waitpid($self->{pid}, 0);
    is($? >> 8, 0, 'the shipper exits cleanly on SIGTERM');
    undef $self->{pid};
}

# the end of every such test: no chain incident, no sanitizer report,
# a clean nginx log
sub finish {
    my ($self) = @_;
    is($self->psql("SELECT count(*) FROM security_incidents WHERE source = '$self->{source}'"), 0,
       'no chain incidents');
    unlike(slurp($self->{log}), qr/AddressSanitizer|runtime error:|LeakSanitizer/, 'no sanitizer reports');
    $self->{nginx}->check_log;
    $self->{nginx}->stop;
}

1;
