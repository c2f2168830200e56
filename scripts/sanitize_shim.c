/*-------------------------------------------------------------------------
 *
 * sanitize_shim.c
 *		Preloaded by scripts/sanitize.sh into the uninstrumented server,
 *		between gcc's ASan and UBSan runtimes, to make those runtimes work
 *		there.  Never part of envault.
 *
 * swift_demangle: a preloaded ASan runtime initialises itself at the first
 * call it intercepts.  In postgres that is a malloc() inside
 * bindtextdomain(), called by the constructor of libgpg-error (loaded
 * through libsystemd) while it holds glibc's gettext lock for writing.  The
 * runtime looks up the optional symbol swift_demangle with dlsym(), and the
 * dlerror() that clears the failed lookup translates its message, taking
 * the same lock for reading: glibc refuses (EDEADLK), the unlock that
 * follows releases the writer, and the next bindtextdomain() waits forever:
 * every postgres process hangs at startup.  With the symbol defined the
 * lookup succeeds.  It only ever sees names mangled by Swift, of which the
 * server has none, and returning NULL means "not demangled".
 *
 * __ubsan_default_options: the UBSan runtime initialises itself at the first
 * report, in a backend, and reads UBSAN_OPTIONS from /proc/self/environ,
 * which the backend has overwritten with its process title by then; so the
 * options are compiled in here (SANITIZE_UBSAN_OPTIONS).  The runtime asks
 * for them through the dynamic linker, which finds this definition first
 * because this object is preloaded before the runtime.  (log_path cannot
 * be among them: UBSan applies it by calling __sanitizer_set_report_path,
 * which resolves to the ASan runtime's function of that name, loaded
 * first; UBSan reports go to the server's stderr, that is its log.)
 *
 * No secrets.
 *
 *-------------------------------------------------------------------------
 */
#include <stddef.h>
#include <stdint.h>

#ifndef SANITIZE_UBSAN_OPTIONS
#error "build with -DSANITIZE_UBSAN_OPTIONS=\"...\""
#endif

char	   *swift_demangle(const char *name, size_t name_len, char *out,
						   size_t *out_len, uint32_t flags);
const char *__ubsan_default_options(void);

char *
swift_demangle(const char *name, size_t name_len, char *out, size_t *out_len,
			   uint32_t flags)
{
	return NULL;
}

const char *
__ubsan_default_options(void)
{
	return SANITIZE_UBSAN_OPTIONS;
}
