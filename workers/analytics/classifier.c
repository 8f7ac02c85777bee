#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <jansson.h>

#include "classifier.h"

#define REPLY_MAX (1 << 20)

typedef struct {
    char *b;
    size_t n;
} buf;

static size_t on_data(char *p, size_t size, size_t nmemb, void *ud)
{
    buf *b = ud;
    size_t n = size * nmemb;
    if (b->n + n > REPLY_MAX)
        return 0;                   /* aborts the transfer */
    char *nb = realloc(b->b, b->n + n + 1);
    if (nb == NULL)
        return 0;
    memcpy(nb + b->n, p, n);
    b->b = nb;
    b->n += n;
    b->b[b->n] = '\0';
    return n;
}

static int parse(const buf *b, size_t n, classifier_probs *out, char *err, size_t errlen)
{
    json_error_t je;
    json_t *root = json_loadb(b->b ? b->b : "", b->n, 0, &je), *scores, *s;
    size_t i;
    int rc = -1;
    if (root == NULL) {
        snprintf(err, errlen, "reply is not JSON: %s", je.text);
        return -1;
    }
    scores = json_object_get(root, "scores");
    if (!json_is_array(scores) || json_array_size(scores) != n) {
        snprintf(err, errlen, "reply needs \"scores\": an array of %zu item(s)", n);
        goto out;
    }
    json_array_foreach(scores, i, s) {
        json_t *p = json_object_get(s, "positive"), *q = json_object_get(s, "negative"),
               *r = json_object_get(s, "neutral");
        if (!json_is_number(p) || !json_is_number(q) || !json_is_number(r)) {
            snprintf(err, errlen, "scores[%zu] needs numbers positive, negative, neutral", i);
            goto out;
        }
        double a = json_number_value(p), c = json_number_value(q), d = json_number_value(r);
        double sum = a + c + d;
        if (a < 0 || c < 0 || d < 0 || a > 1 || c > 1 || d > 1 || sum <= 0) {
            snprintf(err, errlen, "scores[%zu]: probabilities must be in [0, 1] and not all 0", i);
            goto out;
        }
        out[i] = (classifier_probs){ a / sum, c / sum, d / sum };
    }
    rc = 0;
out:
    json_decref(root);
    return rc;
}

int classifier_score(const char *url, int timeout_ms, const char *const *texts, size_t n,
                     classifier_probs *out, char *err, size_t errlen)
{
    json_t *req = json_pack("{s:[]}", "texts"), *arr = json_object_get(req, "texts");
    for (size_t i = 0; arr && i < n; i++)
        if (json_array_append_new(arr, json_string(texts[i])) != 0)
            arr = NULL;
    char *body = arr ? json_dumps(req, JSON_COMPACT) : NULL;
    json_decref(req);
    if (body == NULL) {
        snprintf(err, errlen, "cannot build the request (out of memory or invalid UTF-8)");
        return -1;
    }
    CURL *h = curl_easy_init();
    struct curl_slist *hdr = curl_slist_append(NULL, "Content-Type: application/json");
    buf b = { 0 };
    long status = 0;
    int rc = -1;
    if (h == NULL || hdr == NULL) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdr);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)timeout_ms);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &b);
    CURLcode e = curl_easy_perform(h);
    if (e != CURLE_OK) {
        snprintf(err, errlen, "%s: %s", url, curl_easy_strerror(e));
        goto out;
    }
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    if (status != 200) {
        snprintf(err, errlen, "%s answered HTTP %ld", url, status);
        goto out;
    }
    rc = parse(&b, n, out, err, errlen);
out:
    curl_slist_free_all(hdr);
    if (h != NULL)
        curl_easy_cleanup(h);
    free(b.b);
    free(body);
    return rc;
}
