#define BOOST_TEST_MODULE molt_run
#include <boost/test/unit_test.hpp>
