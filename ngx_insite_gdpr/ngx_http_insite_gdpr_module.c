/*
 * ngx_http_insite_gdpr_module: GDPR audit trail: one hash-chained journal record per authenticated data access.
 *
 * Loaded after ngx_http_insite_module, whose Redis adapter and metrics
 * registry it uses.
 */

#include "ngx_insite_core.h"


static ngx_http_module_t  ngx_http_insite_gdpr_module_ctx = {
    NULL,                                  /* preconfiguration */
    NULL,                                  /* postconfiguration */

    NULL,                                  /* create main configuration */
    NULL,                                  /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    NULL,                                  /* create location configuration */
    NULL                                   /* merge location configuration */
};


ngx_module_t  ngx_http_insite_gdpr_module = {
    NGX_MODULE_V1,
    &ngx_http_insite_gdpr_module_ctx,      /* module context */
    NULL,                                  /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    NULL,                                  /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    NULL,                                  /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};
