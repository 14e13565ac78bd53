/*
 * The snapshot catalog: an immutable tree in one flat, mmap-able file.
 *
 * Layout (little-endian, every section 8-byte aligned):
 *   header (160 bytes) | entries[] | refs[] | chunks[] | packs[] | reads[] |
 *   xattrs[] | strings
 *
 * Entry i is inode i + 1 (the root is entry 0, FUSE inode 1), so inode
 * numbers are the same on every mount of a snapshot.  A directory's
 * children are contiguous entries [first, first + count), sorted by name
 * (bytewise, shorter first): lookup is a binary search and readdir a
 * slice, neither needs more of the catalog than the pages they touch.
 *
 * A regular file's content is refs [first, first + count): each ref is the
 * file offset where a chunk starts.  A chunk is stored in a pack at
 * [pack_off, pack_off + stored_len), zstd-compressed when flags has
 * CHUNK_ZSTD, and its id is the SHA-256 of its raw bytes.  A symlink's
 * target is strings [first, first + count); a device's number is first
 * (count 0); FIFOs and sockets carry nothing.  Hard links (of any kind but
 * directories): every member of a group has ino = index of the group's
 * first member, the leader, which alone carries refs (a symlink member
 * repeats the target).
 *
 * xattrs[] are the extended attributes of leaders, sorted by (entry,
 * name); names and values lie in strings.
 *
 * reads[] (uint32 chunk indices) records, in order, the content the job
 * that committed this snapshot read, so the next mount can prefetch it.
 *
 * catalog_open validates every offset, count and the tree shape, so the
 * accessors below never read out of bounds on a catalog that opened.
 * Version 1 catalogs (a 144-byte header, no xattrs, no special files,
 * links of regular files only) are still read.
 */
#ifndef STASH_CATALOG_H
#define STASH_CATALOG_H

#include "cas.h"
#include "util.h"

#include <stdint.h>
#include <sys/types.h>

#define CATALOG_MAGIC "STASHCT1"
#define CATALOG_VERSION 2
#define CATALOG_V1_HEADER 144
/* caps on what a catalog may claim, checked before anything is allocated */
#define CATALOG_MAX_BYTES (8ULL << 30)
#define CATALOG_MAX_NAME 255
#define CATALOG_MAX_TARGET 4096
#define CATALOG_MAX_DEPTH 4096 /* directory levels below the root */
#define CATALOG_MAX_XATTR_NAME 255
#define CATALOG_MAX_XATTR_VALUE 65536

#define CHUNK_ZSTD 1u

struct cat_header {
	char magic[8];
	uint32_t version;
	uint32_t header_size;
	uint64_t n_entries;
	uint64_t n_refs;
	uint64_t n_chunks;
	uint64_t n_packs;
	uint64_t strings_len;
	uint64_t off_entries;
	uint64_t off_refs;
	uint64_t off_chunks;
	uint64_t off_packs;
	uint64_t off_strings;
	uint64_t total_size;
	int64_t created_ns;
	uint64_t total_bytes; /* sum of regular file sizes (links once) */
	uint64_t n_files; /* regular files (links once) */
	uint64_t n_reads; /* read record: chunk indices in first-read order */
	uint64_t off_reads;
	uint64_t n_xattrs; /* version 2 on */
	uint64_t off_xattrs;
};

struct cat_entry {
	uint32_t parent; /* entry index of the containing directory */
	uint32_t mode; /* st_mode, type bits included */
	uint32_t uid;
	uint32_t gid;
	uint64_t size;
	int64_t mtime_sec;
	uint32_t mtime_nsec;
	uint32_t nlink;
	uint32_t ino; /* hard-link group leader's index, else own index */
	uint32_t name_len;
	uint64_t name_off;
	uint64_t first; /* dir: first child; reg: first ref; lnk: target offset; chr/blk: rdev */
	uint32_t count; /* dir: children;    reg: refs;      lnk: target length */
	uint32_t flags;
};

struct cat_ref {
	uint64_t off; /* file offset where the chunk starts */
	uint32_t chunk;
	uint32_t pad;
};

struct cat_chunk {
	struct cas_id id;
	uint32_t pack;
	uint32_t raw_len;
	uint64_t pack_off;
	uint32_t stored_len;
	uint32_t flags;
};

struct cat_xattr {
	uint32_t entry; /* a leader's index */
	uint32_t name_len;
	uint64_t name_off;
	uint64_t value_off;
	uint32_t value_len;
	uint32_t pad;
};

struct catalog;

/*
 * Serialize arrays into a catalog image in out.  Entries must already obey
 * the layout rules (caller: store/save.c).  0 or -errno.
 */
MUST_CHECK int catalog_build(struct buf *out, const struct cat_entry *entries, uint64_t n_entries,
			     const struct cat_ref *refs, uint64_t n_refs,
			     const struct cat_chunk *chunks, uint64_t n_chunks,
			     const struct cas_id *packs, uint64_t n_packs, const uint32_t *reads,
			     uint64_t n_reads, const struct cat_xattr *xattrs, uint64_t n_xattrs,
			     const char *strings, uint64_t strings_len);

/*
 * Check an image.  0, or -EBADMSG with a reason in why (may be NULL).
 */
MUST_CHECK int catalog_validate(const void *p, size_t n, char *why, size_t whylen);

/* mmap and validate a file.  -ENOENT, -EBADMSG (reason in why), ... */
MUST_CHECK int catalog_open(const char *path, struct catalog **out, char *why, size_t whylen);
/* Validate an image in memory; the catalog borrows p, which must outlive it. */
int catalog_open_mem(const void *p, size_t n, struct catalog **out, char *why, size_t whylen);
void catalog_close(struct catalog *c);

const struct cat_header *catalog_header(const struct catalog *c);
uint32_t catalog_count(const struct catalog *c);
const struct cat_entry *catalog_entry(const struct catalog *c, uint32_t idx);
const char *catalog_name(const struct catalog *c, const struct cat_entry *e);
const char *catalog_target(const struct catalog *c, const struct cat_entry *e);
const struct cat_ref *catalog_refs(const struct catalog *c, const struct cat_entry *e);
const struct cat_chunk *catalog_chunk(const struct catalog *c, uint32_t idx);
const struct cas_id *catalog_pack(const struct catalog *c, uint32_t idx);
/* Extended attributes of leader idx: *n of them, sorted by name. */
const struct cat_xattr *catalog_xattrs(const struct catalog *c, uint32_t idx, uint32_t *n);
/* A string of the catalog (xattr names and values). */
const char *catalog_str(const struct catalog *c, uint64_t off);
/* The read record: *n chunk indices. */
const uint32_t *catalog_reads(const struct catalog *c, uint64_t *n);

/* Child of directory dir named name; its index in *out.  0 or -ENOENT/-ENOTDIR. */
int catalog_lookup(const struct catalog *c, uint32_t dir, const char *name, size_t len,
		   uint32_t *out);

/* Index of the ref covering file offset off in e (which must be a leader). */
uint32_t catalog_ref_at(const struct catalog *c, const struct cat_entry *e, uint64_t off);

/*
 * Drop the mapped catalog's pages from this process's resident set (they
 * stay in the page cache and fault back in on use), so a daemon that walked
 * a million entries does not keep them all counted against it.
 */
void catalog_release_pages(const struct catalog *c);

/* Compare names the way catalogs sort them. */
int catalog_name_cmp(const char *a, size_t al, const char *b, size_t bl);

/* Path of entry idx relative to the root ("" for the root) into out. */
int catalog_path(const struct catalog *c, uint32_t idx, struct buf *out);

#endif
