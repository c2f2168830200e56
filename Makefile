# envault: PGXS build
#
#   make && make install      build and install into the server of pg_config
#   make installcheck         pg_regress suite on a temporary instance, then
#                             the TAP tests (test/t); run as a non-root user
#   scripts/test.sh           everything, as CI runs it
#
#   make freeze               at a release: keep this version's install
#                             script as src/envault--$(EXTVERSION).sql
#   make dist                 the release tarball, from git
#
# The install script is edited in src/envault.sql and built into
# envault--$(EXTVERSION).sql; upgrade scripts are src/envault--A--B.sql,
# and src/envault--X.sql is the frozen install script of release X.

EXTENSION  = envault
EXTVERSION = $(shell sed -n "s/^default_version = '\(.*\)'/\1/p" envault.control)

MODULE_big = envault
OBJS = src/envault.o src/crypto.o src/format.o src/errors.o src/names.o \
       src/masterkey.o src/spi.o src/keycache.o src/keywrap.o src/keystore.o \
       src/encrypt.o src/keys.o \
       src/tenant.o src/rls.o src/tokens.o src/lifecycle.o \
       src/note.o src/chainfmt.o src/canon.o src/chain.o src/chainheads.o src/chaintrigger.o src/chainenable.o src/chainguard.o src/chainmeaning.o src/merkle.o src/chaintree.o src/chainroute.o \
       src/checkpoint.o src/witness.o src/chainverify.o src/chainpurge.o src/accesslog.o src/accessworker.o \
       src/secretstore.o src/scaleout.o

DATA_built = envault--$(EXTVERSION).sql
# the frozen install scripts of earlier releases (CREATE EXTENSION envault
# VERSION '0.1.0'), and the upgrade scripts between releases
# (every src/envault--*.sql: a frozen script is never edited again, and the
# version under development has none until make freeze)
DATA = $(filter-out src/envault--$(EXTVERSION).sql,$(wildcard src/envault--*.sql))

REGRESS = setup format_vectors encrypt errors null_arguments privileges tenant_context rls lifecycle \
          chain chain_tamper chain_meaning chain_tree chain_vectors access_log secrets_store pgcrypto_migration \
          adversarial_ciphertext adversarial_keys adversarial_values adversarial_search_path adversarial_privileges
REGRESS_OPTS = --temp-instance=./tmp_check_regress \
               --temp-config=test/regress.conf

TAP_TESTS = 1
PROVE_TESTS = test/t/*.pl

SHLIB_LINK += -lcrypto
# -Wextra without -Wunused-parameter, which PostgreSQL's own headers and the
# fixed signatures of its callbacks trip over (PostgreSQL builds likewise).
PG_CFLAGS += -Wall -Wextra -Wno-unused-parameter $(if $(WERROR),-Werror)

# SANITIZE=1 builds with AddressSanitizer and UndefinedBehaviorSanitizer
# (gcc's shared runtimes, which the uninstrumented server must preload);
# scripts/sanitize.sh does that and runs the suite.  Never install it into
# a production server.
ifdef SANITIZE
SANITIZE_FLAGS = -fsanitize=address,undefined -fno-sanitize-recover=all \
                 -fno-omit-frame-pointer -g
PG_CFLAGS += $(SANITIZE_FLAGS)
SHLIB_LINK += $(SANITIZE_FLAGS)
endif

EXTRA_CLEAN = tmp_check_regress results regression.diffs regression.out envault-*.tar.gz

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

envault--$(EXTVERSION).sql: src/envault.sql envault.control
	cp $< $@

# --- releases -------------------------------------------------------------------
# make freeze: the install script of this version becomes a frozen file,
# installed as it is from then on (then raise default_version in
# envault.control and add src/envault--$(EXTVERSION)--<next>.sql).  Refuses
# to overwrite a frozen script.
freeze: envault--$(EXTVERSION).sql
	@if [ -e src/envault--$(EXTVERSION).sql ]; then \
		echo "src/envault--$(EXTVERSION).sql is frozen already" >&2; exit 1; fi
	cp envault--$(EXTVERSION).sql src/envault--$(EXTVERSION).sql

# make dist: envault-$(EXTVERSION).tar.gz from the committed tree (HEAD),
# the form PGXN takes (META.json at the top)
dist:
	git archive --format=tar.gz --prefix=envault-$(EXTVERSION)/ \
		-o envault-$(EXTVERSION).tar.gz HEAD

.PHONY: freeze dist

# PGXS does not track headers: every object depends on all of ours
$(OBJS): $(wildcard src/*.h)

# --- envault-verify -----------------------------------------------------------
# A standalone program that verifies an export of an audit chain without a
# database (docs/audit-chain.md), and Merkle proofs between signed tree
# heads; and envault-witness, a witness that cosigns tree heads.  Both link
# only libcrypto, jansson (JSON) and libc: tools/ holds their own code, and
# they reuse the plain-C layers of the extension (crypto, signed notes, the
# row hash layout, Merkle trees), compiled here without the server's
# headers.  Built by "make", installed into PostgreSQL's bindir by "make
# install", removed by "make clean" and "make uninstall".

VERIFY_SRCS = tools/envault-verify.c tools/export.c tools/serverlog.c tools/trust.c \
              tools/verify.c tools/report.c tools/request.c tools/json.c \
              src/crypto.c src/note.c src/chainfmt.c src/merkle.c
VERIFY_OBJS = $(patsubst %.c,tools/obj/%.o,$(notdir $(VERIFY_SRCS)))
WITNESS_SRCS = tools/envault-witness.c tools/request.c tools/trust.c \
               src/crypto.c src/note.c src/chainfmt.c src/merkle.c
WITNESS_OBJS = $(patsubst %.c,tools/obj/%.o,$(notdir $(WITNESS_SRCS)))
VERIFY_CFLAGS = -std=gnu99 -O2 -g -Wall -Wextra -Wmissing-prototypes \
                -Wdeclaration-after-statement -Wformat-security \
                -fstack-protector-strong -D_FORTIFY_SOURCE=2 \
                $(if $(WERROR),-Werror)
# jansson's flags from pkg-config when it knows them (Debian's
# libjansson-dev ships jansson.pc), else the plain library
JANSSON_CFLAGS := $(shell pkg-config --cflags jansson 2>/dev/null)
JANSSON_LIBS := $(or $(shell pkg-config --libs jansson 2>/dev/null),-ljansson)

all: envault-verify envault-witness

tools/obj/%.o: tools/%.c $(wildcard tools/*.h) $(wildcard src/*.h)
	@mkdir -p tools/obj
	$(CC) $(VERIFY_CFLAGS) -Isrc -Itools $(JANSSON_CFLAGS) -c -o $@ $<

tools/obj/%.o: src/%.c $(wildcard src/*.h)
	@mkdir -p tools/obj
	$(CC) $(VERIFY_CFLAGS) -Isrc -c -o $@ $<

envault-verify: $(VERIFY_OBJS)
	$(CC) $(VERIFY_CFLAGS) -o $@ $^ -lcrypto $(JANSSON_LIBS)

envault-witness: $(WITNESS_OBJS)
	$(CC) $(VERIFY_CFLAGS) -o $@ $^ -lcrypto $(JANSSON_LIBS)

install: install-envault-verify
install-envault-verify: envault-verify envault-witness
	$(MKDIR_P) '$(DESTDIR)$(bindir)'
	$(INSTALL_PROGRAM) envault-verify '$(DESTDIR)$(bindir)/envault-verify'
	$(INSTALL_PROGRAM) envault-witness '$(DESTDIR)$(bindir)/envault-witness'
	$(INSTALL_SCRIPT) tools/envault-sign-pkcs11 '$(DESTDIR)$(bindir)/envault-sign-pkcs11'

uninstall: uninstall-envault-verify
uninstall-envault-verify:
	rm -f '$(DESTDIR)$(bindir)/envault-verify' '$(DESTDIR)$(bindir)/envault-witness' \
	      '$(DESTDIR)$(bindir)/envault-sign-pkcs11'

clean: clean-envault-verify
clean-envault-verify:
	rm -rf envault-verify envault-witness tools/obj

.PHONY: install-envault-verify uninstall-envault-verify clean-envault-verify
