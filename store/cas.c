/* SHA-256 through OpenSSL's EVP interface (SHA-NI where the CPU has it). */
#include "cas.h"
#include "util.h"

#include <errno.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <unistd.h>

struct cas_hasher {
	EVP_MD_CTX *ctx;
};

struct cas_hasher *cas_hasher_new(void)
{
	struct cas_hasher *h = calloc(1, sizeof(*h));

	if (!h)
		return NULL;
	h->ctx = EVP_MD_CTX_new();
	if (!h->ctx || EVP_DigestInit_ex(h->ctx, EVP_sha256(), NULL) != 1) {
		cas_hasher_free(h);
		return NULL;
	}
	return h;
}

void cas_hasher_update(struct cas_hasher *h, const void *data, size_t n)
{
	EVP_DigestUpdate(h->ctx, data, n);
}

void cas_hasher_final(struct cas_hasher *h, struct cas_id *out)
{
	unsigned int len = CAS_ID_LEN;

	EVP_DigestFinal_ex(h->ctx, out->b, &len);
	EVP_DigestInit_ex(h->ctx, EVP_sha256(), NULL);
}

void cas_hasher_free(struct cas_hasher *h)
{
	if (!h)
		return;
	EVP_MD_CTX_free(h->ctx);
	free(h);
}

void cas_hash(const void *data, size_t n, struct cas_id *out)
{
	unsigned int len = CAS_ID_LEN;

	EVP_Digest(data, n, out->b, &len, EVP_sha256(), NULL);
}

int cas_hash_fd(int fd, struct cas_id *out)
{
	struct cas_hasher *h = cas_hasher_new();
	char b[1 << 16];
	int rc = 0;

	if (!h)
		return -ENOMEM;
	for (;;) {
		ssize_t n = read(fd, b, sizeof(b));

		if (n < 0) {
			if (errno == EINTR)
				continue;
			rc = -errno;
			break;
		}
		if (n == 0)
			break;
		cas_hasher_update(h, b, (size_t)n);
	}
	if (!rc)
		cas_hasher_final(h, out);
	cas_hasher_free(h);
	return rc;
}

void cas_id_hex(const struct cas_id *id, char *out)
{
	hex_encode(out, id->b, CAS_ID_LEN);
}

int cas_id_parse(struct cas_id *id, const char *s)
{
	if (strlen(s) != CAS_HEX_LEN)
		return -EINVAL;
	return hex_decode(id->b, s, CAS_ID_LEN);
}
