/* Runs a device-check table on one handle and prints the result document the
 * Wine agent and the guest script return (see the README's device checks):
 *   device_checks.exe <device path>   with one check per stdin line:
 *   <name> <ioctl|read|write> <code> <output length> <input hex or ->
 * Used by the repository's Wine tests until the agent runs the table itself. */
#include <windows.h>
#include <stdio.h>
#include <string.h>

static int unhex(const char *hex, unsigned char *out, int room) {
    int n = 0;
    if (strcmp(hex, "-") == 0) return 0;
    while (hex[0] && hex[1] && n < room) {
        unsigned int byte;
        if (sscanf(hex, "%2x", &byte) != 1) return -1;
        out[n++] = (unsigned char)byte;
        hex += 2;
    }
    return n;
}

int main(int argc, char **argv) {
    static unsigned char in[65536], out[65536];
    char line[140000], name[256], op[16], hex[132000];
    unsigned long code, out_len;
    HANDLE h;
    int first = 1;
    if (argc != 2) return 2;
    h = CreateFileA(argv[1], GENERIC_READ | GENERIC_WRITE, FILE_SHARE_READ | FILE_SHARE_WRITE, NULL, OPEN_EXISTING, 0, NULL);
    printf("{\"open_error\": %lu, \"steps\": [", h == INVALID_HANDLE_VALUE ? GetLastError() : 0UL);
    while (h != INVALID_HANDLE_VALUE && fgets(line, sizeof line, stdin)) {
        DWORD returned = 0, error = 0;
        BOOL ok = FALSE;
        int in_len, i;
        if (sscanf(line, "%255s %15s %lu %lu %131999s", name, op, &code, &out_len, hex) != 5) continue;
        in_len = unhex(hex, in, sizeof in);
        if (in_len < 0 || out_len > sizeof out) return 2;
        memset(out, 0, sizeof out);
        if (strcmp(op, "ioctl") == 0) ok = DeviceIoControl(h, code, in_len ? in : NULL, in_len, out_len ? out : NULL, out_len, &returned, NULL);
        else if (strcmp(op, "read") == 0) ok = ReadFile(h, out, out_len, &returned, NULL);
        else if (strcmp(op, "write") == 0) ok = WriteFile(h, in, in_len, &returned, NULL);
        error = ok ? 0 : GetLastError();
        printf("%s{\"name\": \"%s\", \"error\": %lu, \"returned\": %lu, \"output\": \"", first ? "" : ", ", name, error, returned);
        for (i = 0; i < (int)returned && i < (int)out_len; i++) printf("%02x", out[i]);
        printf("\"}");
        first = 0;
    }
    printf("], \"close_error\": %lu}\n", h == INVALID_HANDLE_VALUE ? 0UL : (CloseHandle(h) ? 0UL : GetLastError()));
    return 0;
}
