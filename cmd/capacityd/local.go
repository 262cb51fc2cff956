package main

import (
	"context"
	"fmt"
	"time"

	"github.com/capacityd/capacityd/capacity"
	"github.com/capacityd/capacityd/capacity/pools"
)

// localPools is the write side of every region this instance writes (its
// own, and those promoted here), as one web.Pools: each operation goes to
// the write side of the pool's home region, under the fencing gate. A
// pool of a region it does not write (fenced meanwhile) is refused with
// 503 region-unavailable naming the writer; nothing is written.
type localPools struct{ a *app }

// service returns the write side of pool's home region with the gate held
// shared; release it with a.w.gate.RUnlock.
func (l localPools) service(pool string) (*pools.Service, error) {
	if err := l.a.leaseCheck(); err != nil {
		return nil, err
	}
	home := l.a.cfg.Region
	if l.a.readModels != nil {
		home = l.a.readModels.homeOf(pool)
	}
	l.a.w.gate.RLock()
	if svc := l.a.w.writing[home]; svc != nil {
		return svc, nil
	}
	writer := home
	if t, ok := l.a.w.terms[home]; ok {
		writer = t.Writer
	}
	l.a.w.gate.RUnlock()
	return nil, &capacity.Error{Code: capacity.EREGION, Region: writer,
		Message: fmt.Sprintf("region %s does not write the pools of region %s now (region %s does): nothing was written, retry", l.a.cfg.Region, home, writer)}
}

func (l localPools) Execute(ctx context.Context, pool string, cmd capacity.Command) (pools.Result, error) {
	svc, err := l.service(pool)
	if err != nil {
		return pools.Result{}, err
	}
	res, err := func() (pools.Result, error) {
		defer l.a.w.gate.RUnlock()
		return svc.Execute(ctx, pool, cmd)
	}()
	if err == nil {
		err = l.a.leaseLapsedWhileRunning() // takes the gate itself
	}
	return res, err
}

func (l localPools) Pool(ctx context.Context, pool string) (capacity.PoolView, error) {
	svc, err := l.service(pool)
	if err != nil {
		return capacity.PoolView{}, err
	}
	defer l.a.w.gate.RUnlock()
	return svc.Pool(ctx, pool)
}

func (l localPools) Reservation(ctx context.Context, pool, id string) (capacity.Reservation, error) {
	svc, err := l.service(pool)
	if err != nil {
		return capacity.Reservation{}, err
	}
	defer l.a.w.gate.RUnlock()
	return svc.Reservation(ctx, pool, id)
}

// first is the pool a booking is routed by (the router checked they share
// a writer).
func first(items []capacity.BookingItem) string {
	if len(items) == 0 {
		return ""
	}
	return items[0].Pool
}

func (l localPools) booking(items []capacity.BookingItem, f func(*pools.Service) (pools.Booking, error)) (pools.Booking, error) {
	b, err := func() (pools.Booking, error) {
		svc := l.a.pools
		if pool := first(items); pool != "" {
			var err error
			if svc, err = l.service(pool); err != nil {
				return pools.Booking{}, err
			}
			defer l.a.w.gate.RUnlock()
		}
		return f(svc)
	}()
	if err == nil {
		err = l.a.leaseLapsedWhileRunning() // takes the gate itself
	}
	return b, err
}

func (l localPools) Book(ctx context.Context, b capacity.Book) (pools.Booking, error) {
	return l.booking(b.Items, func(s *pools.Service) (pools.Booking, error) { return s.Book(ctx, b) })
}

func (l localPools) Booking(ctx context.Context, id string, items []capacity.BookingItem) (pools.Booking, error) {
	return l.booking(items, func(s *pools.Service) (pools.Booking, error) { return s.Booking(ctx, id, items) })
}

func (l localPools) ConfirmBooking(ctx context.Context, id string, items []capacity.BookingItem) (pools.Booking, error) {
	return l.booking(items, func(s *pools.Service) (pools.Booking, error) { return s.ConfirmBooking(ctx, id, items) })
}

func (l localPools) ReleaseBooking(ctx context.Context, id string, items []capacity.BookingItem) (pools.Booking, error) {
	return l.booking(items, func(s *pools.Service) (pools.Booking, error) { return s.ReleaseBooking(ctx, id, items) })
}

func (l localPools) ExtendBooking(ctx context.Context, id string, ttl time.Duration, items []capacity.BookingItem) (pools.Booking, error) {
	return l.booking(items, func(s *pools.Service) (pools.Booking, error) { return s.ExtendBooking(ctx, id, ttl, items) })
}

func (l localPools) KnownBooking(id string) ([]capacity.BookingItem, bool) {
	l.a.w.gate.RLock()
	defer l.a.w.gate.RUnlock()
	for _, svc := range l.a.w.writing {
		if items, ok := svc.KnownBooking(id); ok {
			return items, true
		}
	}
	return nil, false
}
