# InsiteChart Edge build.
#
#   make            nginx modules (build/modules/*.so) and workers (build/bin/)
#   make test       everything the README's test command runs
#   make SANITIZE=1 workers and unit tests with ASan + UBSan
#   make COVERAGE=1 modules and workers built with --coverage (gcov)
#   make coverage   the suite on a coverage build, line/branch coverage per
#                   folder (scripts/coverage.sh; docs/operations.md)
#   make NGINX_SRC=/path/to/nginx-1.x   build the modules inside that source tree
#   make install DESTDIR=/tmp/root PREFIX=/usr   install the workers (and, when
#                   built, the modules and, with LEXICONS=1, the lexicons)
#
# Every target installs missing Debian packages first (scripts/deps.sh).

BUILD    ?= build
NGINX_SRC ?=
SANITIZE ?=

CC       ?= cc
PKGS     := hiredis rdkafka libpq jansson libcurl libmicrohttpd libconfig libxml-2.0 libcrypto \
            libsystemd icu-uc icu-i18n zlib pangocairo
CFLAGS   ?= -O2 -g
CFLAGS   += -MMD -MP -std=gnu11 -Wall -Wextra -Werror -Wshadow -Wpointer-arith \
            -Wno-unused-parameter -fno-omit-frame-pointer -D_GNU_SOURCE \
            -Iworkers/lib -I$(BUILD)/gen $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
LDLIBS   += $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lpthread -lm -lstdc++
# C++ only where a library has no C API for the job (insite-notify's ICU
# MessageFormat with named arguments: workers/notify/render.cc)
CXX      ?= g++
CXXFLAGS  = $(filter-out -std=gnu11,$(CFLAGS)) -std=gnu++17
ifeq ($(SANITIZE),1)
CFLAGS   += -fsanitize=address,undefined -fno-sanitize-recover=undefined
LDFLAGS  += -fsanitize=address,undefined
BUILD    := $(BUILD)/asan
endif

# Coverage (gcov): same build directory, so tests find the binaries where
# they always are; ignored under SANITIZE.  The flags stamp makes a switch
# between plain and coverage builds recompile everything.
COVERAGE ?=
ifeq ($(COVERAGE)$(SANITIZE),1)
CFLAGS   += --coverage
LDFLAGS  += --coverage
endif
FLAGS_STAMP := $(BUILD)/.build-flags
$(shell mkdir -p $(BUILD) && echo '$(CC) $(CFLAGS) $(LDFLAGS)' | cmp -s - $(FLAGS_STAMP) \
        || echo '$(CC) $(CFLAGS) $(LDFLAGS)' > $(FLAGS_STAMP))

# Plain-C code shared by the nginx modules and testable outside nginx
# (frame codec, validators): listed here so unit tests and fuzzers link it.
PURE_SRCS := $(wildcard ngx_insite_*/insite_*.c)
LIB_SRCS  := $(wildcard workers/lib/*.c)
WORKERS   := $(sort $(filter-out lib,$(notdir $(patsubst %/,%,$(dir $(wildcard workers/*/*.c))))))
UNIT_SRCS := $(wildcard tests/unit/test_*.c)

LIB_OBJS  := $(patsubst %.c,$(BUILD)/obj/%.o,$(LIB_SRCS) $(PURE_SRCS))
BINS      := $(patsubst %,$(BUILD)/bin/insite-%,$(WORKERS))
UNITS     := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT_SRCS))

.PHONY: all deps modules workers unit test run bench fuzz clean install coverage
all: modules workers

deps:
	@scripts/deps.sh

modules: deps
	@NGINX_SRC="$(NGINX_SRC)" BUILD="$(BUILD)" scripts/build-modules.sh

workers: deps $(BINS)

$(BUILD)/gen/insite_lua.h: $(wildcard lua/*.lua) scripts/lua2c.sh
	@mkdir -p $(@D)
	sh scripts/lua2c.sh lua > $@

$(BUILD)/obj/%.o: %.c $(BUILD)/gen/insite_lua.h $(wildcard workers/lib/*.h ngx_insite_*/insite_*.h)
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(CFLAGS) -c -o $@ $<

$(BUILD)/obj/%.o: %.cc $(wildcard workers/lib/*.h)
	@mkdir -p $(@D)
	$(CXX) $(CXXFLAGS) -c -o $@ $<

$(BUILD)/lib/libinsite.a: $(LIB_OBJS)
	@mkdir -p $(@D)
	rm -f $@ && ar rcs $@ $^

# A worker is its main.c plus an archive of its other files; unit tests link
# every worker's archive, so a test calls worker code through its headers.
define worker_rule
$(BUILD)/lib/libinsite-$(1).a: $(patsubst %.c,$(BUILD)/obj/%.o,$(filter-out workers/$(1)/main.c,$(wildcard workers/$(1)/*.c))) \
		$(patsubst %.cc,$(BUILD)/obj/%.o,$(wildcard workers/$(1)/*.cc))
	@mkdir -p $$(@D)
	rm -f $$@ && ar rcs $$@ $$^
$(BUILD)/bin/insite-$(1): $(BUILD)/obj/workers/$(1)/main.o $(BUILD)/lib/libinsite-$(1).a $(BUILD)/lib/libinsite.a
	@mkdir -p $$(@D)
	$$(CC) $$(LDFLAGS) -o $$@ $$^ $$(LDLIBS)
endef
$(foreach w,$(WORKERS),$(eval $(call worker_rule,$(w))))

# every object depends on the flags it was built with (links follow)
$(patsubst %.c,$(BUILD)/obj/%.o,$(wildcard workers/*/*.c) $(PURE_SRCS) $(UNIT_SRCS)) \
$(patsubst %.cc,$(BUILD)/obj/%.o,$(wildcard workers/*/*.cc)): $(FLAGS_STAMP)

WORKER_LIBS := $(patsubst %,$(BUILD)/lib/libinsite-%.a,$(WORKERS))

$(BUILD)/tests/%: $(BUILD)/obj/tests/unit/%.o $(WORKER_LIBS) $(BUILD)/lib/libinsite.a
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) -o $@ $< $(WORKER_LIBS) $(BUILD)/lib/libinsite.a $(LDLIBS) -lcmocka

unit: deps $(UNITS)
	@scripts/run-unit.sh $(UNITS)

test:
	@scripts/test.sh

run:
	@scripts/run.sh

bench:
	@scripts/bench.sh

fuzz: deps
	@scripts/fuzz.sh

coverage:
	@scripts/coverage.sh

clean:
	rm -rf build

# For non-Debian users and debian/rules alike.  Workers go to $(PREFIX)/bin,
# their example configs to $(SYSCONFDIR)/insite/<worker>.conf and the GDPR
# data map to gdpr-datamap.json (never over existing ones), migrations, Redis
# scripts and notification templates to $(PREFIX)/share/insite/,
# modules (if built) to $(MODULESDIR).  The test-only Kafka mock is left out.
PREFIX     ?= /usr/local
SYSCONFDIR ?= $(if $(filter /usr,$(PREFIX)),/etc,$(PREFIX)/etc)
MODULESDIR ?= $(PREFIX)/lib/nginx/modules
LEXICONS   ?=
install: workers
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(SYSCONFDIR)/insite \
	  $(DESTDIR)$(PREFIX)/share/insite/migrations $(DESTDIR)$(PREFIX)/share/insite/lua
	install -m 0755 $(filter-out %/insite-kafka-mock,$(BINS)) $(DESTDIR)$(PREFIX)/bin/
	for f in workers/*/*.conf.example; do \
	  w=$$(basename $$(dirname $$f)); \
	  [ -e $(DESTDIR)$(SYSCONFDIR)/insite/$$w.conf ] || \
	    install -m 0644 $$f $(DESTDIR)$(SYSCONFDIR)/insite/$$w.conf; \
	done
	install -m 0644 workers/migrations/*.sql $(DESTDIR)$(PREFIX)/share/insite/migrations/
	install -m 0644 lua/*.lua $(DESTDIR)$(PREFIX)/share/insite/lua/
	install -d $(DESTDIR)$(PREFIX)/share/insite/notify/templates
	install -m 0644 workers/notify/templates/*.json $(DESTDIR)$(PREFIX)/share/insite/notify/templates/
	[ -e $(DESTDIR)$(SYSCONFDIR)/insite/gdpr-datamap.json ] || \
	  install -m 0644 workers/gdpr/datamap.json $(DESTDIR)$(SYSCONFDIR)/insite/gdpr-datamap.json
	if ls $(BUILD)/modules/*.so >/dev/null 2>&1; then \
	  install -d $(DESTDIR)$(MODULESDIR) && \
	  install -m 0644 $(BUILD)/modules/*.so $(DESTDIR)$(MODULESDIR)/; fi
	if [ -n "$(LEXICONS)" ]; then \
	  n=$(BUILD)/npm/node_modules; \
	  install -d $(DESTDIR)$(PREFIX)/share/insite/lexicons && \
	  install -m 0644 $$n/vader-sentiment/vader_lexicon.txt \
	    $(DESTDIR)$(PREFIX)/share/insite/lexicons/vader_lexicon.txt && \
	  install -m 0644 $$n/afinn-165-financialmarketnews/index.js \
	    $(DESTDIR)$(PREFIX)/share/insite/lexicons/afinn-165-financialmarketnews.js && \
	  install -m 0644 $$n/vader-sentiment/LICENSE* $$n/vader-sentiment/package.json \
	    $(DESTDIR)$(PREFIX)/share/insite/lexicons/ 2>/dev/null || true; fi

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
