// A shared library that exports something, but not the plugin entry.

#include <boost/config.hpp>

extern "C" BOOST_SYMBOL_EXPORT int not_a_mambakit_entry() { return 42; }
