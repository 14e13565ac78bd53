/* Open-addressing id map; see idmap.h.  Load factor kept under 1/2. */
#include "idmap.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct slot {
	struct cas_id id;
	uint32_t val;
	uint32_t used;
};

struct idmap {
	struct slot *s;
	uint64_t cap; /* power of two */
	uint64_t n;
};

static uint64_t hash_of(const struct cas_id *id)
{
	uint64_t h;

	memcpy(&h, id->b, sizeof(h));
	return h;
}

struct idmap *idmap_new(void)
{
	struct idmap *m = calloc(1, sizeof(*m));

	if (!m)
		return NULL;
	m->cap = 1024;
	m->s = calloc(m->cap, sizeof(*m->s));
	if (!m->s) {
		free(m);
		return NULL;
	}
	return m;
}

void idmap_free(struct idmap *m)
{
	if (!m)
		return;
	free(m->s);
	free(m);
}

static struct slot *find(const struct idmap *m, const struct cas_id *id)
{
	uint64_t i = hash_of(id) & (m->cap - 1);

	for (;;) {
		struct slot *s = &m->s[i];

		if (!s->used || cas_id_cmp(&s->id, id) == 0)
			return s;
		i = (i + 1) & (m->cap - 1);
	}
}

int idmap_get(const struct idmap *m, const struct cas_id *id, uint32_t *val)
{
	struct slot *s = find(m, id);

	if (!s->used)
		return -ENOENT;
	*val = s->val;
	return 0;
}

static int grow(struct idmap *m)
{
	struct idmap nm = { NULL, m->cap * 2, 0 };
	uint64_t i;

	nm.s = calloc(nm.cap, sizeof(*nm.s));
	if (!nm.s)
		return -ENOMEM;
	for (i = 0; i < m->cap; i++) {
		if (m->s[i].used) {
			struct slot *s = find(&nm, &m->s[i].id);

			*s = m->s[i];
			nm.n++;
		}
	}
	free(m->s);
	*m = nm;
	return 0;
}

int idmap_put(struct idmap *m, const struct cas_id *id, uint32_t val)
{
	struct slot *s;

	if ((m->n + 1) * 2 > m->cap) {
		int rc = grow(m);

		if (rc)
			return rc;
	}
	s = find(m, id);
	if (!s->used) {
		s->used = 1;
		s->id = *id;
		m->n++;
	}
	s->val = val;
	return 0;
}

uint64_t idmap_count(const struct idmap *m)
{
	return m->n;
}
