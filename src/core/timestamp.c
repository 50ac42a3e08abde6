/*
 * ISO 8601 parsing by hand: no library in our dependency set parses it, and
 * strptime() does not handle fractions or offsets. Strict: a malformed time is
 * reported, never guessed.
 */
#include "core/timestamp.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static bool digits(const char *s, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (!isdigit((unsigned char)s[i]))
            return false;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return true;
}

/* Days from 1970-01-01 to the civil date (Howard Hinnant's algorithm). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    const int64_t era = (y >= 0 ? y : y - 399) / 400;
    const unsigned yoe = (unsigned)(y - era * 400);
    const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

static bool is_leap(int y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int days_in_month(int y, int m)
{
    static const int days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return m == 2 && is_leap(y) ? 29 : days[m - 1];
}

/* The civil date of a day count from 1970-01-01 (Hinnant's inverse). */
static void civil_from_days(int64_t z, int64_t *y, int *m, int *d)
{
    z += 719468;
    const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    const unsigned doe = (unsigned)(z - era * 146097);
    const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    const unsigned mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = (int64_t)yoe + era * 400 + (*m <= 2);
}

bool ps__time_parse_iso(const char *s, int64_t *ms)
{
    int year, mon, day, hour = 0, min = 0, sec = 0, frac_ms = 0;
    size_t n = strlen(s);
    if (n < 10 || !digits(s, 4, &year) || s[4] != '-' || !digits(s + 5, 2, &mon) || s[7] != '-' ||
        !digits(s + 8, 2, &day))
        return false;
    const char *p = s + 10;
    long offset_min = 0;
    if (*p == 'T' || *p == 't' || *p == ' ') {
        p++;
        if (!digits(p, 2, &hour) || p[2] != ':' || !digits(p + 3, 2, &min))
            return false;
        p += 5;
        if (*p == ':') {
            if (!digits(p + 1, 2, &sec))
                return false;
            p += 3;
            if (*p == '.' || *p == ',') {
                p++;
                int scale = 100, count = 0;
                while (isdigit((unsigned char)*p)) {
                    if (count < 3)
                        frac_ms += (*p - '0') * scale;
                    scale /= 10;
                    count++;
                    p++;
                }
                if (count == 0)
                    return false;
            }
        }
        if (*p == 'Z' || *p == 'z') {
            p++;
        } else if (*p == '+' || *p == '-') {
            int oh, om;
            int sign = *p == '-' ? -1 : 1;
            if (!digits(p + 1, 2, &oh))
                return false;
            p += 3;
            if (*p == ':')
                p++;
            if (!digits(p, 2, &om))
                return false;
            p += 2;
            if (oh > 23 || om > 59)
                return false;
            offset_min = sign * (oh * 60L + om);
        }
    }
    if (*p != '\0')
        return false;
    if (mon < 1 || mon > 12 || day < 1 || day > days_in_month(year, mon) || hour > 23 || min > 59 ||
        sec > 60)
        return false;
    int64_t days = days_from_civil(year, (unsigned)mon, (unsigned)day);
    int64_t secs = days * 86400 + hour * 3600 + min * 60 + sec - offset_min * 60;
    *ms = secs * 1000 + frac_ms;
    return true;
}

bool ps__time_from_json(const json_object *v, int64_t *ms)
{
    switch (json_object_get_type(v)) {
    case json_type_string:
        return ps__time_parse_iso(json_object_get_string((json_object *)v), ms);
    case json_type_int:
        *ms = json_object_get_int64(v);
        return true;
    case json_type_double: {
        double d = json_object_get_double(v);
        /* ±2^53 ms is far past any real date and keeps the cast defined. */
        if (!isfinite(d) || fabs(d) > 9007199254740992.0)
            return false;
        *ms = (int64_t)d;
        return true;
    }
    default:
        return false;
    }
}

/* 0000-01-01T00:00:00.000Z and 9999-12-31T23:59:59.999Z: what 4 digits hold. */
#define FIRST_MS (-62167219200000LL)
#define LAST_MS (253402300799999LL)

void ps__time_format_iso(int64_t ms, char out[32])
{
    /* Clamped to four-digit years, so the text always parses back. */
    if (ms < FIRST_MS)
        ms = FIRST_MS;
    if (ms > LAST_MS)
        ms = LAST_MS;
    int64_t days = ms / 86400000, rem = ms % 86400000;
    if (rem < 0) {
        rem += 86400000;
        days -= 1;
    }
    int64_t year;
    int mon, day;
    civil_from_days(days, &year, &mon, &day);
    /* The modulos are no-ops after the clamp; they let the compiler see
     * that every field fits its width. */
    snprintf(out, 32, "%04u-%02u-%02uT%02u:%02u:%02u.%03uZ", (unsigned)year % 10000u,
             (unsigned)mon % 100u, (unsigned)day % 100u, (unsigned)(rem / 3600000) % 100u,
             (unsigned)(rem / 60000 % 60), (unsigned)(rem / 1000 % 60), (unsigned)(rem % 1000));
}

int64_t ps__time_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t ps__time_monotonic_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
