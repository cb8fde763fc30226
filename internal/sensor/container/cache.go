package container

import "sync"

// cache is a bounded map for the resolver's hot path. It approximates LRU
// with two generations: lookups hit the current map under a read lock;
// when it fills up it becomes the previous generation and a fresh one
// starts, and entries still in use move forward as they are read. What is
// left in the previous generation when the current one fills again is
// dropped. A hit in the current generation costs one map lookup and does
// not allocate.
type cache[K comparable, V any] struct {
	mu        sync.RWMutex
	cur, prev map[K]V
	max       int // entries per generation
}

// newCache returns a cache holding at least size/2 and at most size
// entries. It starts empty and grows with use: a node has far fewer
// containers than the bound, and the sensor's memory is its footprint.
func newCache[K comparable, V any](size int) *cache[K, V] {
	return &cache[K, V]{cur: map[K]V{}, prev: map[K]V{}, max: max(size/2, 1)}
}

func (c *cache[K, V]) get(k K) (V, bool) {
	c.mu.RLock()
	v, ok := c.cur[k]
	if ok {
		c.mu.RUnlock()
		return v, true
	}
	v, ok = c.prev[k]
	c.mu.RUnlock()
	if ok {
		c.put(k, v)
	}
	return v, ok
}

func (c *cache[K, V]) put(k K, v V) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.cur[k]; !ok && len(c.cur) >= c.max {
		c.prev, c.cur = c.cur, make(map[K]V, c.max)
	}
	c.cur[k] = v
	delete(c.prev, k)
}

func (c *cache[K, V]) len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.cur) + len(c.prev)
}
