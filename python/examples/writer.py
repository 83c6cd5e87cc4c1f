# The seed's high-availability writer (gray-scale-upgrade.md), changed only in its import and in
# where the addresses and credentials come from:
#
#   python writer.py [SITE ...]          e.g. python writer.py 127.0.0.1:8922 127.0.0.2:8922 127.0.0.3:8922
#
# Environment: SHOAL_SITES (comma-separated, when no SITE is given; default: the seed's 3 local
# data nodes), SHOAL_USER (default admin) / SHOAL_PASSWORD (required unless SHOAL_TOKEN is
# set; a local cluster's is in DIR/admin.password — there is no default password), SHOAL_TOKEN (a
# bearer token instead of user and password), SHOAL_COUNT (how
# many rows; default 10000000), SHOAL_INTERVAL (seconds between appends; default 1).
import os
import sys

import shoal as ddb
import pandas as pd
import datetime
import time
import random

sites = sys.argv[1:] or os.environ.get(
    "SHOAL_SITES", "127.0.0.1:8922,127.0.0.2:8922,127.0.0.3:8922"
).split(",")
host, port = sites[0].rsplit(":", 1)
userid = os.environ.get("SHOAL_USER", "admin")
token = os.environ.get("SHOAL_TOKEN") or None
password = os.environ.get("SHOAL_PASSWORD")
if password is None and token is None:
    sys.exit("set SHOAL_PASSWORD (a local cluster's is in DIR/admin.password) or SHOAL_TOKEN")
count = int(os.environ.get("SHOAL_COUNT", "10000000"))
interval = float(os.environ.get("SHOAL_INTERVAL", "1"))

s = ddb.session()
s.connect(host=host,port=int(port),userid=userid,password=password, highAvailability=True, highAvailabilitySites=sites, token=token)
appender = ddb.tableAppender(dbPath="dfs://stock",tableName='stock',ddbSession=s,action="fitColumnType")
x = ['Apple','Microsoft','Meta','Google','Amazon']
i = 1
while i<=count:
    now = datetime.datetime.now()
    name = random.sample(x,1)
    data = pd.DataFrame({'time':now,'name':name,'id':i})
    appender.append(data)
    print(i)
    i = i+1
    time.sleep(interval)
