/*
 * insite-kafka-mock: a Kafka cluster for tests, built on librdkafka's
 * in-process mock cluster (rdkafka_mock.h).
 *
 *   insite-kafka-mock [--brokers N] [--topic NAME:PARTITIONS]... [--catalog]
 *                     [--ready-file PATH]
 *
 * --catalog creates the topics of the catalog (workers/lib/kafka_topics.h)
 * with their partition counts, after the --topic ones (a name given with
 * --topic keeps its count).  The mock keeps no topic configs: retention
 * and compression.type are applied on a real cluster only.
 *
 * Prints "bootstrap=<host:port,...>" on stdout once the brokers listen
 * (on 127.0.0.1, ephemeral ports), optionally writes the bootstrap list to
 * the ready file (atomically: temp file + rename), then waits for SIGTERM or
 * SIGINT, destroys the cluster and exits 0.
 *
 * Exit codes: 0 clean shutdown, 1 runtime failure, 2 usage error.
 */

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "kafka_topics.h"

#define KMOCK_NAME         "insite-kafka-mock"
#define KMOCK_MAX_TOPICS   64
#define KMOCK_MAX_BROKERS  16
#define KMOCK_MAX_PARTS    1024

#define KMOCK_EXIT_OK      0
#define KMOCK_EXIT_FAIL    1
#define KMOCK_EXIT_USAGE   2


typedef struct {
    const char  *name;      /* points into argv, cut at ':' */
    int          partitions;
} kmock_topic_t;


typedef struct {
    int            brokers;
    const char    *ready_file;
    kmock_topic_t  topics[KMOCK_MAX_TOPICS];
    int            ntopics;
    int            catalog;    /* --catalog */
} kmock_conf_t;


static void
kmock_usage(FILE *out)
{
    fprintf(out,
            "usage: " KMOCK_NAME " [--brokers N] [--topic NAME:PARTITIONS]..."
            " [--ready-file PATH]\n"
            "  --brokers N              number of mock brokers (default 1,"
            " max %d)\n"
            "  --topic NAME:PARTITIONS  create a topic up front (repeatable)\n"
            "  --catalog                create the catalog's topics"
            " (kafka_topics.h)\n"
            "  --ready-file PATH        write the bootstrap list there once"
            " up\n"
            "Prints bootstrap=<host:port,...> and runs until SIGTERM/SIGINT.\n",
            KMOCK_MAX_BROKERS);
}


static int
kmock_parse_int(const char *s, int min, int max, int *out)
{
    char  *end;
    long   v;

    errno = 0;
    v = strtol(s, &end, 10);

    if (errno != 0 || end == s || *end != '\0' || v < min || v > max) {
        return -1;
    }

    *out = (int) v;
    return 0;
}


static int
kmock_parse_topic(kmock_conf_t *conf, char *arg)
{
    char           *colon;
    kmock_topic_t  *t;

    if (conf->ntopics == KMOCK_MAX_TOPICS) {
        fprintf(stderr, KMOCK_NAME ": too many --topic options (max %d)\n",
                KMOCK_MAX_TOPICS);
        return -1;
    }

    colon = strrchr(arg, ':');
    if (colon == NULL || colon == arg) {
        fprintf(stderr, KMOCK_NAME ": --topic \"%s\": expected NAME:PARTITIONS\n",
                arg);
        return -1;
    }

    t = &conf->topics[conf->ntopics];

    if (kmock_parse_int(colon + 1, 1, KMOCK_MAX_PARTS, &t->partitions) != 0) {
        fprintf(stderr, KMOCK_NAME ": --topic \"%s\": partitions must be an"
                " integer in 1..%d\n", arg, KMOCK_MAX_PARTS);
        return -1;
    }

    *colon = '\0';
    t->name = arg;
    conf->ntopics++;

    return 0;
}


/* The catalog's topics not named yet: conf->topics points at the
 * catalog's static strings, like at argv's. */
static int
kmock_add_catalog(kmock_conf_t *conf)
{
    int     i;
    size_t  c;

    for (c = 0; c < insite_kafka_ntopics; c++) {
        for (i = 0; i < conf->ntopics; i++) {
            if (strcmp(conf->topics[i].name, insite_kafka_topics[c].name) == 0) {
                break;
            }
        }
        if (i < conf->ntopics) {
            continue;
        }
        if (conf->ntopics == KMOCK_MAX_TOPICS) {
            fprintf(stderr, KMOCK_NAME ": too many topics (max %d)\n",
                    KMOCK_MAX_TOPICS);
            return -1;
        }
        conf->topics[conf->ntopics].name = insite_kafka_topics[c].name;
        conf->topics[conf->ntopics].partitions = insite_kafka_topics[c].partitions;
        conf->ntopics++;
    }

    return 0;
}


static int
kmock_parse_args(kmock_conf_t *conf, int argc, char **argv)
{
    int  c;

    static const struct option  opts[] = {
        { "brokers",    required_argument, NULL, 'b' },
        { "topic",      required_argument, NULL, 't' },
        { "catalog",    no_argument,       NULL, 'c' },
        { "ready-file", required_argument, NULL, 'r' },
        { "help",       no_argument,       NULL, 'h' },
        { NULL, 0, NULL, 0 }
    };

    conf->brokers = 1;
    conf->ready_file = NULL;
    conf->ntopics = 0;
    conf->catalog = 0;

    while ((c = getopt_long(argc, argv, "b:t:r:ch", opts, NULL)) != -1) {
        switch (c) {

        case 'c':
            conf->catalog = 1;
            break;

        case 'b':
            if (kmock_parse_int(optarg, 1, KMOCK_MAX_BROKERS, &conf->brokers)
                != 0)
            {
                fprintf(stderr, KMOCK_NAME ": --brokers \"%s\": must be an"
                        " integer in 1..%d\n", optarg, KMOCK_MAX_BROKERS);
                return -1;
            }
            break;

        case 't':
            if (kmock_parse_topic(conf, optarg) != 0) {
                return -1;
            }
            break;

        case 'r':
            if (optarg[0] == '\0') {
                fprintf(stderr, KMOCK_NAME ": --ready-file: empty path\n");
                return -1;
            }
            conf->ready_file = optarg;
            break;

        case 'h':
            kmock_usage(stdout);
            exit(KMOCK_EXIT_OK);

        default:
            kmock_usage(stderr);
            return -1;
        }
    }

    if (optind != argc) {
        fprintf(stderr, KMOCK_NAME ": unexpected argument \"%s\"\n",
                argv[optind]);
        kmock_usage(stderr);
        return -1;
    }

    if (conf->catalog && kmock_add_catalog(conf) != 0) {
        return -1;
    }

    return 0;
}


/*
 * Block the termination signals in this thread before librdkafka starts
 * its threads, so that they inherit the mask and only sigwait() sees them.
 */
static int
kmock_block_signals(sigset_t *set)
{
    int  rc;

    /*
     * A shell starting us in the background may have set SIGINT to
     * SIG_IGN: an ignored signal is discarded, never pending for sigwait().
     */
    if (signal(SIGINT, SIG_DFL) == SIG_ERR
        || signal(SIGTERM, SIG_DFL) == SIG_ERR)
    {
        fprintf(stderr, KMOCK_NAME ": signal: %s\n", strerror(errno));
        return -1;
    }

    sigemptyset(set);
    sigaddset(set, SIGTERM);
    sigaddset(set, SIGINT);

    rc = pthread_sigmask(SIG_BLOCK, set, NULL);
    if (rc != 0) {
        fprintf(stderr, KMOCK_NAME ": pthread_sigmask: %s\n", strerror(rc));
        return -1;
    }

    return 0;
}


static rd_kafka_t *
kmock_client_new(void)
{
    char              errstr[512];
    rd_kafka_t       *rk;
    rd_kafka_conf_t  *kconf;

    kconf = rd_kafka_conf_new();
    if (kconf == NULL) {
        fprintf(stderr, KMOCK_NAME ": rd_kafka_conf_new failed\n");
        return NULL;
    }

    /*
     * The handle only hosts the mock cluster and never connects anywhere:
     * hide the notice about the missing bootstrap.servers, keep warnings.
     */
    if (rd_kafka_conf_set(kconf, "log_level", "4", errstr, sizeof(errstr))
        != RD_KAFKA_CONF_OK)
    {
        fprintf(stderr, KMOCK_NAME ": rd_kafka_conf_set(log_level): %s\n",
                errstr);
        rd_kafka_conf_destroy(kconf);
        return NULL;
    }

    rk = rd_kafka_new(RD_KAFKA_PRODUCER, kconf, errstr, sizeof(errstr));
    if (rk == NULL) {
        /* on failure the conf object is still ours */
        fprintf(stderr, KMOCK_NAME ": rd_kafka_new: %s\n", errstr);
        rd_kafka_conf_destroy(kconf);
        return NULL;
    }

    return rk;
}


static int
kmock_create_topics(rd_kafka_mock_cluster_t *mc, const kmock_conf_t *conf)
{
    int                 i, rf;
    rd_kafka_resp_err_t err;

    rf = conf->brokers < 3 ? conf->brokers : 3;

    for (i = 0; i < conf->ntopics; i++) {
        err = rd_kafka_mock_topic_create(mc, conf->topics[i].name,
                                         conf->topics[i].partitions, rf);
        if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
            fprintf(stderr, KMOCK_NAME ": creating topic \"%s\" (%d"
                    " partitions, replication %d): %s\n",
                    conf->topics[i].name, conf->topics[i].partitions, rf,
                    rd_kafka_err2str(err));
            return -1;
        }
    }

    return 0;
}


static int
kmock_write_ready_file(const char *path, const char *bootstrap)
{
    int    n;
    char   tmp[PATH_MAX];
    FILE  *f;

    n = snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long) getpid());
    if (n < 0 || (size_t) n >= sizeof(tmp)) {
        fprintf(stderr, KMOCK_NAME ": ready file path too long: %s\n", path);
        return -1;
    }

    f = fopen(tmp, "w");
    if (f == NULL) {
        fprintf(stderr, KMOCK_NAME ": fopen(\"%s\"): %s\n", tmp,
                strerror(errno));
        return -1;
    }

    if (fprintf(f, "%s\n", bootstrap) < 0) {
        fprintf(stderr, KMOCK_NAME ": writing \"%s\": %s\n", tmp,
                strerror(errno));
        (void) fclose(f);
        (void) unlink(tmp);
        return -1;
    }

    if (fclose(f) != 0) {
        fprintf(stderr, KMOCK_NAME ": fclose(\"%s\"): %s\n", tmp,
                strerror(errno));
        (void) unlink(tmp);
        return -1;
    }

    /* rename() makes the file appear complete or not at all */
    if (rename(tmp, path) != 0) {
        fprintf(stderr, KMOCK_NAME ": rename(\"%s\", \"%s\"): %s\n", tmp, path,
                strerror(errno));
        (void) unlink(tmp);
        return -1;
    }

    return 0;
}


static int
kmock_announce(const char *bootstrap, const char *ready_file)
{
    if (printf("bootstrap=%s\n", bootstrap) < 0 || fflush(stdout) != 0) {
        fprintf(stderr, KMOCK_NAME ": writing to stdout: %s\n",
                strerror(errno));
        return -1;
    }

    if (ready_file != NULL && kmock_write_ready_file(ready_file, bootstrap)) {
        return -1;
    }

    return 0;
}


static int
kmock_wait_for_signal(const sigset_t *set)
{
    int  rc, sig;

    for ( ;; ) {
        rc = sigwait(set, &sig);
        if (rc == 0) {
            fprintf(stderr, KMOCK_NAME ": got %s, shutting down\n",
                    sig == SIGTERM ? "SIGTERM" : "SIGINT");
            return 0;
        }

        if (rc != EINTR) {
            fprintf(stderr, KMOCK_NAME ": sigwait: %s\n", strerror(rc));
            return -1;
        }
    }
}


int
main(int argc, char **argv)
{
    int                      rc;
    sigset_t                 set;
    const char              *bootstrap;
    rd_kafka_t              *rk;
    kmock_conf_t             conf;
    rd_kafka_mock_cluster_t *mc;

    if (kmock_parse_args(&conf, argc, argv) != 0) {
        return KMOCK_EXIT_USAGE;
    }

    if (kmock_block_signals(&set) != 0) {
        return KMOCK_EXIT_FAIL;
    }

    rk = kmock_client_new();
    if (rk == NULL) {
        return KMOCK_EXIT_FAIL;
    }

    mc = rd_kafka_mock_cluster_new(rk, conf.brokers);
    if (mc == NULL) {
        fprintf(stderr, KMOCK_NAME ": rd_kafka_mock_cluster_new(%d brokers)"
                " failed\n", conf.brokers);
        rd_kafka_destroy(rk);
        return KMOCK_EXIT_FAIL;
    }

    rc = KMOCK_EXIT_FAIL;

    bootstrap = rd_kafka_mock_cluster_bootstraps(mc);
    if (bootstrap == NULL || bootstrap[0] == '\0') {
        fprintf(stderr, KMOCK_NAME ": mock cluster has no bootstrap address\n");
        goto done;
    }

    if (kmock_create_topics(mc, &conf) != 0) {
        goto done;
    }

    if (kmock_announce(bootstrap, conf.ready_file) != 0) {
        goto done;
    }

    if (kmock_wait_for_signal(&set) == 0) {
        rc = KMOCK_EXIT_OK;
    }

    if (conf.ready_file != NULL && unlink(conf.ready_file) != 0
        && errno != ENOENT)
    {
        fprintf(stderr, KMOCK_NAME ": unlink(\"%s\"): %s\n", conf.ready_file,
                strerror(errno));
    }

done:

    rd_kafka_mock_cluster_destroy(mc);
    rd_kafka_destroy(rk);

    return rc;
}
