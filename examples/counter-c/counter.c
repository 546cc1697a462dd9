// The counter of the product page in C, with nothing but the bindings `wit-bindgen c` generates
// from wit/object.wit: `POST /counter-c/<name>/increment` and `/decrement` answer the new value,
// `GET /counter-c/<name>` the current one. The value is stored as JSON text under the key
// `value`, as the Rust, JavaScript and Python SDKs store it.

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "durable_object.h"

static bool equals(const durable_object_string_t *s, const char *text) {
    size_t n = strlen(text);
    return s->len == n && memcmp(s->ptr, text, n) == 0;
}

// Answers `status` with `text`; the host frees what the response points to (post-return).
static void answer(exports_wdo_object_handler_response_t *ret, uint16_t status, const char *text, size_t len) {
    ret->status = status;
    ret->headers.len = 1;
    ret->headers.ptr = malloc(sizeof(durable_object_tuple2_string_string_t));
    durable_object_string_dup(&ret->headers.ptr[0].f0, "content-type");
    durable_object_string_dup(&ret->headers.ptr[0].f1, "text/plain; charset=utf-8");
    ret->body.len = len;
    ret->body.ptr = malloc(len ? len : 1);
    memcpy(ret->body.ptr, text, len);
}

static void answer_text(exports_wdo_object_handler_response_t *ret, uint16_t status, const char *text) {
    answer(ret, status, text, strlen(text));
}

// A storage error: its message (every variant carries one), as a 500.
static void storage_failed(exports_wdo_object_handler_response_t *ret, wdo_object_storage_error_t *err) {
    durable_object_string_t *message = &err->val.storage;
    answer(ret, 500, (const char *)message->ptr, message->len);
    wdo_object_storage_error_free(err);
}

void exports_wdo_object_handler_fetch(exports_wdo_object_handler_request_t *request,
                                      exports_wdo_object_handler_response_t *ret) {
    int delta;
    if (equals(&request->method, "GET") && equals(&request->path, "/")) {
        delta = 0;
    } else if (equals(&request->method, "POST") && equals(&request->path, "/increment")) {
        delta = 1;
    } else if (equals(&request->method, "POST") && equals(&request->path, "/decrement")) {
        delta = -1;
    } else {
        answer_text(ret, 404, "not found\n");
        wdo_object_types_request_free(request);
        return;
    }
    wdo_object_types_request_free(request);

    durable_object_string_t key;
    durable_object_string_set(&key, "value");
    durable_object_option_list_u8_t stored;
    wdo_object_storage_error_t err;
    if (!wdo_object_storage_get(&key, &stored, &err)) {
        storage_failed(ret, &err);
        return;
    }
    long long value = 0;
    if (stored.is_some) {
        char text[32] = {0};
        size_t n = stored.val.len < sizeof text - 1 ? stored.val.len : sizeof text - 1;
        memcpy(text, stored.val.ptr, n);
        value = strtoll(text, NULL, 10);
        durable_object_option_list_u8_free(&stored);
    }

    char text[32];
    if (delta != 0) {
        value += delta;
        int n = snprintf(text, sizeof text, "%lld", value);
        durable_object_list_u8_t bytes = {(uint8_t *)text, (size_t)n};
        if (!wdo_object_storage_put(&key, &bytes, &err)) {
            storage_failed(ret, &err);
            return;
        }
    }
    snprintf(text, sizeof text, "%lld", value);
    answer_text(ret, 200, text);
}

bool exports_wdo_object_handler_call(durable_object_string_t *method, durable_object_list_u8_t *args,
                                     durable_object_list_u8_t *ret, durable_object_string_t *err) {
    (void)ret;
    durable_object_string_free(method);
    durable_object_list_u8_free(args);
    durable_object_string_dup(err, "counter-c has no methods");
    return false;
}

bool exports_wdo_object_handler_alarm(exports_wdo_object_handler_alarm_info_t *info, durable_object_string_t *err) {
    (void)info;
    (void)err;
    return true;
}

void exports_wdo_object_handler_websocket_message(exports_wdo_object_handler_socket_id_t socket,
                                                  exports_wdo_object_handler_message_t *message) {
    (void)socket;
    wdo_object_websockets_message_free(message);
}

void exports_wdo_object_handler_websocket_close(exports_wdo_object_handler_socket_id_t socket, uint16_t code,
                                                durable_object_string_t *reason, bool was_clean) {
    (void)socket;
    (void)code;
    (void)was_clean;
    durable_object_string_free(reason);
}

void exports_wdo_object_handler_websocket_error(exports_wdo_object_handler_socket_id_t socket,
                                                durable_object_string_t *error) {
    (void)socket;
    durable_object_string_free(error);
}
