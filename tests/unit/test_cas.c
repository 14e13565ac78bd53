/* SHA-256 against known vectors; incremental equals one-shot; hex round trip. */
#include "../../store/cas.h"
#include "check.h"

#include <string.h>

int main(void)
{
	struct cas_id a, b, c;
	char hex[CAS_HEX_LEN + 1];
	struct cas_hasher *h = cas_hasher_new();

	cas_hash("", 0, &a);
	cas_id_hex(&a, hex);
	CHECK(!strcmp(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"));
	cas_hash("abc", 3, &a);
	cas_id_hex(&a, hex);
	CHECK(!strcmp(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"));

	cas_hasher_update(h, "a", 1);
	cas_hasher_update(h, "bc", 2);
	cas_hasher_final(h, &b);
	CHECK(cas_id_cmp(&a, &b) == 0);
	/* the hasher resets after final */
	cas_hasher_update(h, "abc", 3);
	cas_hasher_final(h, &b);
	CHECK(cas_id_cmp(&a, &b) == 0);

	CHECK_EQ(cas_id_parse(&c, hex), 0);
	CHECK(cas_id_cmp(&a, &c) == 0);
	CHECK_EQ(cas_id_parse(&c, "abc"), -22);
	hex[5] = 'g';
	CHECK_EQ(cas_id_parse(&c, hex), -22);
	CHECK(!cas_id_is_zero(&a));
	memset(&c, 0, sizeof(c));
	CHECK(cas_id_is_zero(&c));
	cas_hasher_free(h);
	cas_hasher_free(NULL);
	return check_done("test_cas");
}
