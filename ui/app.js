document.getElementById("app").textContent = "convlog";
