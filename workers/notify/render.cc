// ICU MessageFormat behind render.h's C interface (see there).
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <unicode/calendar.h>
#include <unicode/curramt.h>
#include <unicode/datefmt.h>
#include <unicode/gregocal.h>
#include <unicode/locid.h>
#include <unicode/messagepattern.h>
#include <unicode/msgfmt.h>
#include <unicode/timezone.h>
#include <unicode/unistr.h>

#include "render.h"

using icu::UnicodeString;

namespace {

icu::Locale locale_of(const char *lang)
{
    UErrorCode st = U_ZERO_ERROR;
    icu::Locale l = icu::Locale::forLanguageTag(lang ? lang : "en", st);
    if (U_FAILURE(st) || l.isBogus())
        return icu::Locale("en");
    return l;
}

void set_err(char *err, size_t errlen, const char *fmt, const char *a = "", const char *b = "")
{
    if (err != nullptr && errlen > 0)
        snprintf(err, errlen, fmt, a, b);
}

// The argument names a pattern refers to (top level and nested).
std::vector<std::string> arg_names(const UnicodeString &pattern, UErrorCode &st)
{
    std::vector<std::string> out;
    UParseError pe;
    icu::MessagePattern mp(pattern, &pe, st);
    if (U_FAILURE(st))
        return out;
    for (int32_t i = 0; i < mp.countParts(); i++) {
        const icu::MessagePattern::Part &p = mp.getPart(i);
        if (p.getType() == UMSGPAT_PART_TYPE_ARG_NAME) {
            std::string s;
            mp.getSubstring(p).toUTF8String(s);
            out.push_back(s);
        }
    }
    return out;
}

bool to_formattable(const json_t *v, icu::Formattable &f, UErrorCode &st)
{
    if (json_is_integer(v)) {
        f.setInt64((int64_t)json_integer_value(v));
        return true;
    }
    if (json_is_real(v)) {
        f.setDouble(json_real_value(v));
        return true;
    }
    if (json_is_string(v)) {
        f.setString(UnicodeString::fromUTF8(json_string_value(v)));
        return true;
    }
    if (json_is_object(v)) {
        json_t *ms = json_object_get(v, "epoch_ms");
        if (json_is_number(ms)) {
            f.setDate((UDate)json_number_value(ms));
            return true;
        }
        json_t *amt = json_object_get(v, "amount"), *cur = json_object_get(v, "currency");
        if (json_is_number(amt) && json_is_string(cur) && strlen(json_string_value(cur)) == 3) {
            UnicodeString c = UnicodeString::fromUTF8(json_string_value(cur));
            auto *ca = new icu::CurrencyAmount(json_number_value(amt), c.getTerminatedBuffer(), st);
            if (U_FAILURE(st)) {
                delete ca;
                return false;
            }
            f.adoptObject(ca);
            return true;
        }
    }
    return false;
}

// Compiled patterns: building a MessageFormat (locale data, plural rules,
// number formatters) costs far more than formatting with one, and a burst
// of alerts renders the same few patterns over and over.  One lock: the
// formats are mutated (time zone) per call.
struct compiled {
    std::unique_ptr<icu::MessageFormat> mf;
    std::vector<std::string> names;
};
std::mutex cache_lock;
std::map<std::string, compiled> cache;
const size_t cache_max = 1024;

} // namespace

extern "C" int notify_msg_check(const char *lang, const char *pattern, char *err, size_t errlen)
{
    UErrorCode st = U_ZERO_ERROR;
    UParseError pe;
    icu::MessageFormat mf(UnicodeString::fromUTF8(pattern), locale_of(lang), pe, st);
    if (U_SUCCESS(st))
        return 0;
    if (err != nullptr && errlen > 0)
        snprintf(err, errlen, "line %d, offset %d: %s", (int)pe.line, (int)pe.offset,
                 u_errorName(st));
    return -1;
}

extern "C" char *notify_msg_format(const char *lang, const char *tz, const char *pattern,
                                   const json_t *args, char *err, size_t errlen)
{
    UErrorCode st = U_ZERO_ERROR;
    std::string key = std::string(lang ? lang : "en") + '\x01' + pattern;
    std::lock_guard<std::mutex> guard(cache_lock);
    auto it = cache.find(key);
    if (it == cache.end()) {
        UParseError pe;
        UnicodeString pat = UnicodeString::fromUTF8(pattern);
        compiled c;
        c.mf.reset(new icu::MessageFormat(pat, locale_of(lang), pe, st));
        if (U_FAILURE(st)) {
            if (err != nullptr && errlen > 0)
                snprintf(err, errlen, "line %d, offset %d: %s", (int)pe.line, (int)pe.offset,
                         u_errorName(st));
            return nullptr;
        }
        c.names = arg_names(pat, st);
        if (U_FAILURE(st)) {
            set_err(err, errlen, "pattern: %s", u_errorName(st));
            return nullptr;
        }
        if (cache.size() >= cache_max)
            cache.clear();
        it = cache.emplace(key, std::move(c)).first;
    }
    icu::MessageFormat &mf = *it->second.mf;
    // dates in the reader's time zone
    std::unique_ptr<icu::TimeZone> zone(
        icu::TimeZone::createTimeZone(UnicodeString::fromUTF8(tz && *tz ? tz : "UTC")));
    std::unique_ptr<icu::StringEnumeration> fnames(mf.getFormatNames(st));
    if (U_SUCCESS(st) && fnames) {
        const UnicodeString *n;
        while ((n = fnames->snext(st)) != nullptr && U_SUCCESS(st)) {
            icu::Format *f = mf.getFormat(*n, st);
            if (auto *df = dynamic_cast<icu::DateFormat *>(f))
                df->setTimeZone(*zone);
        }
    }
    st = U_ZERO_ERROR;
    std::vector<UnicodeString> unames;
    std::vector<icu::Formattable> values;
    for (const std::string &name : it->second.names) {
        UnicodeString u = UnicodeString::fromUTF8(name);
        bool seen = false;
        for (const UnicodeString &x : unames)
            seen = seen || x == u;
        if (seen)
            continue;
        json_t *v = json_object_get(args, name.c_str());
        if (v == nullptr) {
            set_err(err, errlen, "missing argument \"%s\"", name.c_str());
            return nullptr;
        }
        icu::Formattable f;
        if (!to_formattable(v, f, st)) {
            set_err(err, errlen, "argument \"%s\": unsupported value", name.c_str());
            return nullptr;
        }
        unames.push_back(u);
        values.push_back(f);
    }
    UnicodeString out;
    mf.format(unames.data(), values.data(), (int32_t)values.size(), out, st);
    if (U_FAILURE(st)) {
        set_err(err, errlen, "format: %s", u_errorName(st));
        return nullptr;
    }
    std::string s;
    out.toUTF8String(s);
    return strdup(s.c_str());
}

extern "C" int notify_lang_rtl(const char *lang)
{
    return locale_of(lang).isRightToLeft() ? 1 : 0;
}

extern "C" int notify_tz_valid(const char *tz)
{
    if (tz == nullptr || *tz == '\0')
        return 0;
    std::unique_ptr<icu::TimeZone> z(icu::TimeZone::createTimeZone(UnicodeString::fromUTF8(tz)));
    UnicodeString id;
    z->getID(id);
    return id != UNICODE_STRING_SIMPLE("Etc/Unknown");
}

static icu::Calendar *calendar(const char *tz)
{
    UErrorCode st = U_ZERO_ERROR;
    icu::TimeZone *z = icu::TimeZone::createTimeZone(UnicodeString::fromUTF8(tz ? tz : "UTC"));
    icu::Calendar *c = new icu::GregorianCalendar(z, st);     // adopts z
    if (U_FAILURE(st)) {
        delete c;
        return nullptr;
    }
    return c;
}

extern "C" int notify_tz_minute_of_day(const char *tz, long long epoch_ms)
{
    UErrorCode st = U_ZERO_ERROR;
    std::unique_ptr<icu::Calendar> c(calendar(tz));
    if (!c)
        return -1;
    c->setTime((UDate)epoch_ms, st);
    int m = c->get(UCAL_HOUR_OF_DAY, st) * 60 + c->get(UCAL_MINUTE, st);
    return U_SUCCESS(st) ? m : -1;
}

extern "C" long long notify_tz_next_local(const char *tz, long long from_ms, int minute_of_day)
{
    UErrorCode st = U_ZERO_ERROR;
    std::unique_ptr<icu::Calendar> c(calendar(tz));
    if (!c || minute_of_day < 0 || minute_of_day > 1439)
        return -1;
    c->setTime((UDate)from_ms, st);
    for (int day = 0; day < 3 && U_SUCCESS(st); day++) {
        if (day > 0) {
            c->setTime((UDate)from_ms, st);
            c->add(UCAL_DATE, day, st);
        }
        c->set(UCAL_HOUR_OF_DAY, minute_of_day / 60);
        c->set(UCAL_MINUTE, minute_of_day % 60);
        c->set(UCAL_SECOND, 0);
        c->set(UCAL_MILLISECOND, 0);
        UDate t = c->getTime(st);
        if (U_SUCCESS(st) && t > (UDate)from_ms)
            return (long long)t;
    }
    return -1;
}
