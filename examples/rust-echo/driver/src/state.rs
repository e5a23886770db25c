//! Driver-wide state: what DriverEntry acquired (one flag each), the kernel
//! objects that must live at a fixed non-paged address, and the counters the
//! IOCTLs report.
use core::cell::UnsafeCell;
use core::mem::MaybeUninit;
use core::sync::atomic::{AtomicI32, AtomicPtr, AtomicU32, Ordering};

use wdk_sys::{DEVICE_OBJECT, ERESOURCE, KDPC, KEVENT, KSPIN_LOCK, KTIMER, NPAGED_LOOKASIDE_LIST};

/// A kernel object in static storage, initialized by its Ke*/Ex* routine.
pub struct Object<T>(UnsafeCell<MaybeUninit<T>>);

// SAFETY: the kernel routines that own these objects synchronize them.
unsafe impl<T> Sync for Object<T> {}

impl<T> Object<T> {
    pub const fn new() -> Self {
        Object(UnsafeCell::new(MaybeUninit::zeroed()))
    }

    pub fn get(&self) -> *mut T {
        self.0.get().cast()
    }
}

#[derive(Clone, Copy)]
pub enum Acquired {
    Scratch = 1 << 0,
    Lookaside = 1 << 1,
    Resource = 1 << 2,
    Device = 1 << 3,
    Symlink = 1 << 4,
    Timer = 1 << 5,
    WorkItem = 1 << 6,
    ProcessNotifyEx = 1 << 7,
    ProcessNotify = 1 << 8,
    ThreadNotify = 1 << 9,
    ImageNotify = 1 << 10,
}

pub struct State {
    acquired: AtomicU32,
    pub device: AtomicPtr<DEVICE_OBJECT>,
    pub scratch: AtomicPtr<u8>,
    pub work_item: AtomicPtr<wdk_sys::_IO_WORKITEM>,
    pub pool_outstanding: AtomicI32,
    pub start_type: AtomicU32,
    pub greeting: AtomicU32,
    pub fail_at: AtomicU32,
    pub timer_fired: AtomicU32,
    pub work_ran: AtomicU32,
    pub echoes: AtomicU32,
    pub process_events: AtomicU32,
    pub image_events: AtomicU32,
    pub thread_events: AtomicU32,
    pub lookaside: Object<NPAGED_LOOKASIDE_LIST>,
    pub resource: Object<ERESOURCE>,
    pub timer: Object<KTIMER>,
    pub dpc: Object<KDPC>,
    pub timer_event: Object<KEVENT>,
    pub work_event: Object<KEVENT>,
    pub lock: Object<KSPIN_LOCK>,
}

impl State {
    pub fn acquire(&self, what: Acquired) {
        self.acquired.fetch_or(what as u32, Ordering::AcqRel);
    }

    /// True (once) when `what` was acquired: the caller releases it.
    pub fn release(&self, what: Acquired) -> bool {
        self.acquired.fetch_and(!(what as u32), Ordering::AcqRel) & what as u32 != 0
    }

    pub fn holds(&self, what: Acquired) -> bool {
        self.acquired.load(Ordering::Acquire) & what as u32 != 0
    }
}

pub static STATE: State = State {
    acquired: AtomicU32::new(0),
    device: AtomicPtr::new(core::ptr::null_mut()),
    scratch: AtomicPtr::new(core::ptr::null_mut()),
    work_item: AtomicPtr::new(core::ptr::null_mut()),
    pool_outstanding: AtomicI32::new(0),
    start_type: AtomicU32::new(0),
    greeting: AtomicU32::new(0),
    fail_at: AtomicU32::new(0),
    timer_fired: AtomicU32::new(0),
    work_ran: AtomicU32::new(0),
    echoes: AtomicU32::new(0),
    process_events: AtomicU32::new(0),
    image_events: AtomicU32::new(0),
    thread_events: AtomicU32::new(0),
    lookaside: Object::new(),
    resource: Object::new(),
    timer: Object::new(),
    dpc: Object::new(),
    timer_event: Object::new(),
    work_event: Object::new(),
    lock: Object::new(), // a zeroed KSPIN_LOCK is a released one
};
